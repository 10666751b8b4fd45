"""The transfer state machine driven by hand (`transfers.process`, as the worker calls it)
against the session's Cashfree sandbox, in a scratch database with no worker: what is sent,
what is not, and what the books say after."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.errors import CashfreeNotFound
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.gateway.payout_models import Transfer
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import service as payees
from commdesk_billing.modules.payees.model import PayeeStatus
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements import transfers
from commdesk_billing.modules.settlements.model import Settlement, SettlementStatus
from tests.modules.payees.helpers import fresh_account
from tests.modules.settlements.conftest import TERMS
from tests.modules.settlements.helpers import (
    MadePayee,
    directory,
    earn,
    make_payee,
    move_account,
    payable,
    scalar,
    settle_run,
)


async def _settled(engine: AsyncEngine, settings: Settings, payee: MadePayee) -> Settlement:
    [o] = await settle_run(
        engine,
        settings,
        by="t",
        payee_id=payee.id,
        period=f"t:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    assert o.created and o.settlement is not None, o
    return o.settlement


async def _suspend(engine: AsyncEngine, payee: MadePayee) -> None:
    async def work(conn: AsyncConnection) -> None:
        await payees.set_status(conn, payee.id, PayeeStatus.suspended)

    await in_transaction(engine, work)


async def _process(
    engine: AsyncEngine, settings: Settings, payee_settings: Settings, s: Settlement, source: str
) -> SettlementStatus:
    client = payouts_client(payee_settings)
    try:
        async with directory(payee_settings) as communities:

            async def work(conn: AsyncConnection) -> SettlementStatus:
                return await transfers.process(
                    conn, client, settings, communities, s.id, source=source
                )

            status: SettlementStatus = await in_transaction(engine, work)
            return status
    finally:
        await client.aclose()


async def test_a_payee_suspended_before_its_transfer_is_sent_is_not_paid(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """A suspended payee is never paid out (payees' model): a settlement made before the
    suspension whose transfer was not yet sent is not sent; its gross goes back to payable
    (settled again once the payee is reactivated)."""
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, payee, 40_000)
    s = await _settled(scratch_engine, settings, payee)
    await _suspend(scratch_engine, payee)
    status = await _process(scratch_engine, settings, payee_settings, s, "created")
    assert status is SettlementStatus.failed
    code = await scalar(
        scratch_engine, "SELECT failure_code FROM settlements WHERE id = :i", i=s.id
    )
    assert code == "payee_suspended"
    client = payouts_client(payee_settings)
    try:
        with pytest.raises(CashfreeNotFound):
            await client.get_transfer(transfer_id=f"stl{s.id.hex}a1")
    finally:
        await client.aclose()
    assert await payable(scratch_engine, payee) == 40_000
    # A repeated command changes nothing more.
    assert (
        await _process(scratch_engine, settings, payee_settings, s, "created")
        is SettlementStatus.failed
    )
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_transfer_that_reached_cashfree_before_the_suspension_is_followed_not_failed(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """A worker died after its create reached Cashfree (the attempt still `new`), then the
    payee was suspended: the money is out at Cashfree, so the settlement follows that
    transfer; failing it back to payable would pay it twice."""
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, payee, 40_000)
    s = await _settled(scratch_engine, settings, payee)
    client = payouts_client(payee_settings)
    try:
        await client.create_transfer(
            transfer_id=f"stl{s.id.hex}a1",
            amount_paise=s.net_paise,
            beneficiary_id=s.beneficiary_id,
            mode=s.transfer_mode,
        )
    finally:
        await client.aclose()
    await _suspend(scratch_engine, payee)
    status = await _process(scratch_engine, settings, payee_settings, s, "created")
    # Followed, whichever step the sandbox's clock has reached by now (on a loaded machine
    # the transfer can already be SUCCESS): never failed back to payable.
    assert status in (SettlementStatus.processing, SettlementStatus.paid)
    assert await payable(scratch_engine, payee) == 4_000  # the reserve: the gross is out
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_retry_is_not_sent_before_its_wait_whoever_asks(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """A retryable failure makes the next attempt, to be sent after
    `settlement_retry_after_s` (a balance topped up, a bank back online). The status sync
    (every `settlement_sync_after_s`, shorter by default), a late webhook or a person asking
    meanwhile must not send it early: each early try spends an attempt on the same cause."""
    settings = Settings(**{**TERMS, "settlement_retry_after_s": 900.0})  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, payee, 40_000)
    s = await _settled(scratch_engine, settings, payee)

    async def declined(conn: AsyncConnection) -> SettlementStatus:
        [attempt] = await repo.attempts(conn, s.id)
        answer = Transfer.model_validate(
            {
                "transfer_id": attempt.transfer_id,
                "cf_transfer_id": "1",
                "status": "FAILED",
                "status_code": "INSUFFICIENT_BALANCE",
                "transfer_amount": Decimal(s.net_paise) / 100,
            }
        )
        return await transfers.apply(conn, settings, s, attempt, answer, datetime.now(UTC))

    assert await in_transaction(scratch_engine, declined) is SettlementStatus.processing
    second = f"stl{s.id.hex}a2"
    for source in ("sync", "webhook", "manual", "created"):
        status = await _process(scratch_engine, settings, payee_settings, s, source)
        assert status is SettlementStatus.processing
    client = payouts_client(payee_settings)
    try:
        with pytest.raises(CashfreeNotFound):
            await client.get_transfer(transfer_id=second)
        # Once its wait is over (here: none), the retry command sends it.
        due = settings.model_copy(update={"settlement_retry_after_s": 0.0})
        status = await _process(scratch_engine, due, payee_settings, s, "retry")
        assert status in (SettlementStatus.processing, SettlementStatus.paid)
        assert (await client.get_transfer(transfer_id=second)).transfer_id == second
    finally:
        await client.aclose()
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_reversal_seen_first_and_without_a_utr_leaves_the_books_clean(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """The SUCCESS was never seen (its webhook lost, the sync late) and Cashfree's answer
    is already REVERSED, without a UTR: the settlement is paid and reversed in one step,
    its gross back in payable, and `ledger verify` has nothing to say of it."""
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, payee, 40_000)
    s = await _settled(scratch_engine, settings, payee)

    async def reversed_(conn: AsyncConnection) -> SettlementStatus:
        [attempt] = await repo.attempts(conn, s.id)
        answer = Transfer.model_validate(
            {
                "transfer_id": attempt.transfer_id,
                "cf_transfer_id": "1",
                "status": "REVERSED",
                "status_code": "ACCOUNT_BLOCKED",
                "transfer_amount": Decimal(s.net_paise) / 100,
            }
        )
        return await transfers.apply(conn, settings, s, attempt, answer, datetime.now(UTC))

    assert await in_transaction(scratch_engine, reversed_) is SettlementStatus.reversed
    assert await payable(scratch_engine, payee) == 40_000
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


@pytest.mark.parametrize(
    ("status", "code"), [("FAILED", "INVALID_ACCOUNT_FAIL"), ("REVERSED", "ACCOUNT_BLOCKED")]
)
async def test_a_destination_cashfree_called_wrong_is_not_paid_again_until_changed(
    status: str, code: str, scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """A transfer failed (or came back) because the account is wrong or blocked
    (`payout_codes.NEEDS_NEW_DETAILS`: "stop paying it, ask the payee"): the next runs do
    not send the payee's money there again, every period, each a failure and an alert;
    they wait until the payee gives an account again."""
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, payee, 40_000)
    s = await _settled(scratch_engine, settings, payee)

    async def answer(conn: AsyncConnection) -> SettlementStatus:
        [attempt] = await repo.attempts(conn, s.id)
        t = Transfer.model_validate(
            {
                "transfer_id": attempt.transfer_id,
                "cf_transfer_id": "1",
                "status": status,
                "status_code": code,
                "transfer_amount": Decimal(s.net_paise) / 100,
                "transfer_utr": "UTR1",
            }
        )
        return await transfers.apply(conn, settings, s, attempt, t, datetime.now(UTC))

    assert (await in_transaction(scratch_engine, answer)).value in ("failed", "reversed")
    [again] = await settle_run(
        scratch_engine,
        settings,
        by="t",
        payee_id=payee.id,
        period=f"t:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    assert (again.created, again.waiting) == (False, "needs_new_bank_details")
    assert await payable(scratch_engine, payee) == 40_000
    # The payee gives an account (a new version): settled to it once its cooling-off ends.
    await move_account(scratch_engine, payee_settings, payee, fresh_account(), timedelta(seconds=1))
    later = datetime.now(UTC) + timedelta(seconds=5)
    [after] = await settle_run(
        scratch_engine,
        settings,
        by="t",
        payee_id=payee.id,
        period=f"t:{uuid.uuid4().hex}",
        cut_off=later,
        at=later,
    )
    assert after.created, after
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]
