"""`commdesk-billing auto-recharge pause`: an operator turns one wallet's auto-recharge off
(the runbook's per-wallet pause); its debits then write no request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.wallet import service as ws
from tests.modules.autorecharge.conftest import debit, decisions, enable, member, recharges

pytestmark = pytest.mark.slow  # a process of its own


def _pause(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", "auto-recharge", "pause", *args],
        env={
            **os.environ,
            "BILLING_DATABASE_URL": settings.database_url,
            "BILLING_LOG_JSON": "false",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_operator_pauses_one_wallet(engine: AsyncEngine, settings: Settings) -> None:
    m = await member(engine, 500)
    await enable(engine, settings, m)
    done = _pause(settings, str(m.wallet.id), "--reason", "incident 42")
    assert (done.returncode, done.stdout.strip()) == (0, "paused"), done.stderr
    wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, m.wallet.id))
    assert (wallet.auto_recharge_enabled, wallet.auto_recharge_trigger) == (False, None)
    assert await decisions(engine, m.wallet.id) == [("disabled", "operator")]
    await debit(engine, m.wallet.id, 400)
    assert await recharges(engine, m.wallet.id) == []
    again = _pause(settings, str(m.wallet.id), "--reason", "twice")
    assert again.stdout.strip() == "auto-recharge was not on for this wallet"
