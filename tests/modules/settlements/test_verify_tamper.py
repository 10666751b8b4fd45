"""The settlement checks of `ledger verify`, each shown failing on a deliberate tamper.

A payee earns through a real partner share, is settled by the service and paid by the
state machine (`transfers.apply`, fed the answer Cashfree gives for a paid transfer), in a
scratch database; the books are clean; then one record is changed behind the
application's back, as only a superuser could, and the named checks catch it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.payout_models import Transfer
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements import invariants, transfers
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements.model import SettlementStatus
from tests.harness.databases import tamper
from tests.modules.settlements.conftest import TERMS
from tests.modules.settlements.helpers import earn, make_payee, settle_run

_TABLES = ("ledger_entries", "settlements", "settlement_transfers", "payout_accounts")
_CREATED = "(SELECT journal_id FROM settlements WHERE id = $1)"
_PAID = "(SELECT id FROM ledger_journals WHERE idempotency_key = 'settlement:' || $1 || ':paid')"

# case: (SQL with $1 the settlement id as text, extra args, findings it must raise)
CASES: dict[str, tuple[str, tuple[object, ...], set[str]]] = {
    "created journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_CREATED}::uuid",
        (),
        {"settlement_journal", "settlement_payable", "payouts_in_transit"},
    ),
    "net and fee moved on the row": (
        "UPDATE settlements SET net_paise = net_paise - 1, fee_paise = fee_paise + 1 "
        "WHERE id = $1::uuid",
        (),
        {"settlement_journal", "settlement_transfer"},
    ),
    "the paid transfer marked failed": (
        "UPDATE settlement_transfers SET status = 'failed' WHERE settlement_id = $1::uuid",
        (),
        {"settlement_transfer"},
    ),
    "the payout leg booked to in transit's neighbour": (
        f"UPDATE ledger_entries SET account_id = $2 WHERE journal_id = {_PAID} AND account_id = $3",
        (House.PAYOUT_FEE_REVENUE, House.PAYOUTS_IN_TRANSIT),
        {"settlement_journal", "payouts_in_transit"},
    ),
    "a paid settlement said failed": (
        "UPDATE settlements SET status = 'failed', ended_at = now(), utr = NULL, "
        "paid_at = NULL WHERE id = $1::uuid",
        (),
        {"settlement_journal", "settlement_payable", "settlement_transfer"},
    ),
    "a reserve a paisa off its rate": (
        "UPDATE settlements SET reserve_paise = reserve_paise + 1, "
        "gross_paise = gross_paise - 1, net_paise = net_paise - 1 WHERE id = $1::uuid",
        (),
        {"settlement_figures", "settlement_journal", "settlement_payable", "settlement_transfer"},
    ),
    "paid to another beneficiary": (
        "UPDATE settlements SET beneficiary_id = 'cdbsomeoneelse' WHERE id = $1::uuid",
        (),
        {"settlement_target"},
    ),
    "paid to another payee's account": (
        "UPDATE settlements SET account_id = (SELECT id FROM payout_accounts "
        "WHERE payee_id <> settlements.payee_id LIMIT 1) WHERE id = $1::uuid",
        (),
        {"settlement_target"},
    ),
    "made in its account's cooling-off": (
        "UPDATE payout_accounts SET payouts_blocked_until = now() + interval '1 day' "
        "WHERE id = (SELECT account_id FROM settlements WHERE id = $1::uuid)",
        (),
        {"settlement_target"},
    ),
}


async def _paid_settlement(engine: AsyncEngine, payee_settings: Settings) -> uuid.UUID:
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    await make_payee(engine, payee_settings)  # another payee, whose account is not ours
    payee = await make_payee(engine, payee_settings)
    await earn(engine, payee, 50_000)
    [outcome] = await settle_run(
        engine, settings, by="t", payee_id=payee.id, period="t:1", cut_off=datetime.now(UTC)
    )
    assert outcome.settlement is not None
    s = outcome.settlement

    async def pay(conn: AsyncConnection) -> None:
        [attempt] = await repo.attempts(conn, s.id)
        answer = Transfer.model_validate(
            {
                "transfer_id": attempt.transfer_id,
                "cf_transfer_id": "1",
                "status": "SUCCESS",
                "status_code": "COMPLETED",
                "transfer_amount": Decimal(s.net_paise) / 100,
                "transfer_utr": "SANDBOXUTR000000000001",
            }
        )
        status = await transfers.apply(conn, settings, s, attempt, answer, datetime.now(UTC))
        assert status is SettlementStatus.paid

    await in_transaction(engine, pay)
    return s.id


@pytest.mark.parametrize("case", list(CASES))
async def test_each_settlement_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    settlement_id = await _paid_settlement(scratch_engine, payee_settings)
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    sql, args, expected = CASES[case]
    await tamper(scratch_database_url, sql, str(settlement_id), *args, tables=_TABLES)
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, [str(f) for f in report.findings]
