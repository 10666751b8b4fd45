"""`commdesk-billing staff create` and `staff disable`, as an operator runs them: the password
from stdin or a named environment variable (never an argument), weak ones refused, the
account's sessions ended when it is disabled, each change audited as the operator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from tests.console.conftest import PASSWORD, Console

CLI = [sys.executable, "-m", "commdesk_billing.cli"]


async def _cli(
    settings: Settings, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_LOG_JSON": "false",
        **(env or {}),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [*CLI, *args],
        input=stdin,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
async def test_staff_create_and_disable(
    settings: Settings, engine: AsyncEngine, console: Console
) -> None:
    email = f"Ops.{uuid.uuid4().hex[:6]}@CommDesk.test"
    address = email.lower()
    weak = await _cli(
        settings, "staff", "create", "--email", email, "--role", "support", stdin="short\n"
    )
    assert weak.returncode == 3 and "12 to 1024 characters" in weak.stderr
    made = await _cli(
        settings, "staff", "create", "--email", email, "--role", "support", stdin=PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"created support {address} (")
    again = await _cli(
        settings,
        "staff",
        "create",
        "--email",
        address,
        "--role",
        "auditor",
        "--password-env",
        "CONSOLE_PW",
        env={"CONSOLE_PW": PASSWORD},
    )
    assert again.returncode == 3 and "exists already" in again.stderr
    bad_role = await _cli(settings, "staff", "create", "--email", "x@y.test", "--role", "service")
    assert bad_role.returncode == 2

    async with console.client() as c:
        assert (await console.sign_in(c, address)).status_code == 303
        assert (await c.get("/console")).status_code == 200
        reset = await _cli(
            settings, "staff", "set-password", "--email", address, stdin="another passphrase 42\n"
        )
        assert reset.returncode == 0, reset.stderr
        assert (await c.get("/console")).status_code == 303  # its session ended
        assert (await console.sign_in(c, address)).status_code == 401  # the old password
        signed = await c.post(
            "/console/sign-in", data={"email": address, "password": "another passphrase 42"}
        )
        assert signed.status_code == 303
        off = await _cli(settings, "staff", "disable", "--email", address)
        assert off.returncode == 0 and off.stdout == f"disabled {address}\n", off.stderr
        # The session in hand ends at once; signing in again is refused.
        assert (await c.get("/console")).status_code == 303
        assert (await console.sign_in(c, address)).status_code == 401

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, actor_role, channel, details FROM audit_logs"
                    " WHERE target_type = 'staff' AND target_id = :e"
                    "   AND actor_role = 'operator' ORDER BY created_at, id"
                ),
                {"e": address},
            )
        ).all()
    assert [(r.action, r.channel) for r in rows] == [
        ("console.staff.created", "cli"),
        ("console.staff.password_set", "cli"),
        ("console.staff.disabled", "cli"),
    ]
    assert rows[1].details == {"sessions_ended": 1}
    assert rows[2].details == {"sessions_ended": 1}
