"""Property-based contract run: schemathesis reads our `/openapi.json` and sends generated
requests (valid and invalid) to every operation of a running stack, over real HTTP, as a
member, a service, a finance admin and with no token. No answer may be a 5xx, and every
documented answer must match its schema.

The schemathesis CLI runs in a subprocess: its requests are synchronous, and the API under
test serves from this test's event loop. The number of examples is bounded so the run fits
the suite's time budget; `BILLING_SCHEMATHESIS_MAX_EXAMPLES` raises it for a deeper run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack, StackFactory
from tests.modules.payees.helpers import key_settings

pytestmark = pytest.mark.slow

_CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
_MAX_EXAMPLES = os.environ.get("BILLING_SCHEMATHESIS_MAX_EXAMPLES", "6")


def _tokens(stack: Stack) -> dict[str, str | None]:
    s = stack.settings
    return {
        "anonymous": None,
        "member": issue_token(s, sub="schemathesis-member", role=Role.member),
        "service": issue_token(
            s,
            sub="schemathesis-service",
            role=Role.service,
            scopes=["wallets:read", "wallets:debit", "usage:write", "usage:read"],
        ),
        "finance": issue_token(s, sub="schemathesis-finance", role=Role.finance_admin),
    }


async def _run(stack: Stack, who: str, token: str | None, report: Path) -> tuple[int, str]:
    # Without a token every operation answers 401 before it parses anything: a few examples
    # each show that (and that no 401 path fails), many would only repeat it.
    examples = "3" if token is None else _MAX_EXAMPLES
    cli = Path(sys.executable).with_name("schemathesis")
    args = [
        str(cli),
        "run",
        f"{stack.api_url}/openapi.json",
        "--checks",
        _CHECKS,
        "--max-examples",
        examples,
        "--phases",
        "examples,coverage,fuzzing",
        # One worker: hypothesis's lambda descriptions race on Python 3.11's AST recursion
        # counter when two threads build strategies at once ("recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--seed",
        "20261207",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=report,  # it keeps a cache of crashes in `.schemathesis/` under its cwd
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_no_server_errors_and_answers_match_the_schema(
    stacks: StackFactory, tmp_path: Path
) -> None:
    # A stack of its own with payout accounts configured (the sealing keys), so their routes
    # are exercised instead of answering 503 `payouts_unavailable`; its database is its own,
    # as the run leaves generated wallets, holds and plans behind.
    stack = await stacks(**key_settings())
    tokens = _tokens(stack)
    # The four callers at once (each run is a process of its own, mostly waiting on our
    # answers): the suite's wall time is the slowest run's, not the sum.
    runs = await asyncio.gather(
        *(_run(stack, who, tok, _own(tmp_path / who)) for who, tok in tokens.items())
    )
    failed = {who: out for who, (code, out) in zip(tokens, runs, strict=True) if code != 0}
    assert not failed, "\n\n".join(f"== {who}\n{out[-15000:]}" for who, out in failed.items())


def _own(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
