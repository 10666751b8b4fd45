"""Settlements end to end: the service settles a payee that earned through real journals,
the worker sends the transfer to the Cashfree sandbox over HTTP, the sandbox's clock moves
the transfer on, its signed webhooks reach our receiver (or are lost, and the sync asks),
and the books are checked (`ledger verify`'s settlement checks) after each story."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements import invariants, service
from commdesk_billing.modules.settlements.jobs import sync_open_settlements
from commdesk_billing.modules.settlements.model import Settlement
from commdesk_billing.modules.settlements.settle_now import settle_now
from commdesk_billing.security.jwt import Role
from commdesk_billing.storage import LocalDocumentStore
from tests.harness.stack import Stack
from tests.modules.payees.helpers import INVALID_ACCOUNT
from tests.modules.settlements.conftest import PAYOUT_STEP_S
from tests.modules.settlements.helpers import (
    MadePayee,
    Payouts,
    earn,
    make_payee,
    move_account,
    payable,
    scalar,
    settle_run,
    wait_attempts,
    wait_status,
)


async def _settle(stack: Stack, payee: MadePayee) -> service.Outcome:
    [outcome] = await settle_run(
        stack.engine,
        stack.settings,
        by="test",
        payee_id=payee.id,
        period=f"test:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    return outcome


async def _settled(stack: Stack, payee: MadePayee) -> Settlement:
    outcome = await _settle(stack, payee)
    assert outcome.created and outcome.settlement is not None, outcome
    return outcome.settlement


async def _checks_clean(stack: Stack) -> None:
    report = await verify_ledger(stack.engine, checks=list(invariants.CHECKS))
    assert report.ok, [str(f) for f in report.findings]


async def _legs(stack: Stack, s: Settlement) -> dict[str, dict[str, int]]:
    async with stack.engine.connect() as conn:
        from sqlalchemy import text

        rows = await conn.execute(
            text("""
            SELECT j.kind, a.code, sum(e.amount) FROM ledger_journals j
              JOIN ledger_entries e ON e.journal_id = j.id
              JOIN ledger_accounts a ON a.id = e.account_id
             WHERE j.metadata->>'settlement_id' = :s GROUP BY j.kind, a.code"""),
            {"s": str(s.id)},
        )
        out: dict[str, dict[str, int]] = {}
        for kind, code, amount in rows:
            out.setdefault(kind, {})[code] = int(amount)
        return out


async def test_a_settlement_with_reserve_tds_tcs_and_fee_is_paid_with_its_utr(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 100_000)
    await earn(stack.engine, payee, 23_457)
    s = await _settled(stack, payee)
    # available 123 457; reserve 10 % = 12 345.7 -> 12 346; gross 111 111;
    # TDS 1 % = 1 111.11 -> 1 111; TCS 0.5 % = 555.555 -> 556; fee 118; net 109 326.
    assert (
        s.payable_paise,
        s.reserves_held_paise,
        s.reserve_paise,
        s.gross_paise,
        s.tds_paise,
        s.tcs_paise,
        s.fee_paise,
        s.net_paise,
    ) == (123_457, 0, 12_346, 111_111, 1_111, 556, 118, 109_326)
    assert s.reserve_until - s.created_at == timedelta(days=7)
    assert await payable(stack.engine, payee) == 12_346  # the reserve stays in payable
    assert (await _legs(stack, s))["settlement.created"] == {
        payee.payable_code: 111_111,
        "inr:tds_payable_194o": -1_111,
        "inr:gst_tcs_payable": -556,
        "inr:payout_fee_revenue": -118,
        "inr:payouts_in_transit": -109_326,
    }
    await wait_attempts(stack.engine, s.id, 1)  # the worker sent it: RECEIVED
    await wait_status(stack.engine, s.id, {"processing"})
    await payouts.advance(3 * PAYOUT_STEP_S)  # PENDING -> SUCCESS -> COMPLETED
    await wait_status(stack.engine, s.id, {"paid"})
    utr = await scalar(stack.engine, "SELECT utr FROM settlements WHERE id = :id", id=s.id)
    assert utr and utr.startswith("SANDBOXUTR")
    [transfer] = await payouts.transfers({f"stl{s.id.hex}a1"})
    assert (transfer["status"], transfer["transfer_amount"], transfer["transfer_utr"]) == (
        "SUCCESS",
        1093.26,
        utr,
    )
    # The webhooks were kept, the beneficiary's VPA masked in them.
    kept = await scalar(
        stack.engine,
        "SELECT string_agg(convert_from(raw_body, 'UTF8'), ' ') FROM payout_webhooks "
        "WHERE transfer_id = :t",
        t=f"stl{s.id.hex}a1",
    )
    assert payee.vpa and kept and "SUCCESS" in kept and payee.vpa not in kept
    assert (await _legs(stack, s))["settlement.paid"] == {
        "inr:payouts_in_transit": 109_326,
        "inr:cashfree_payouts_cash": -109_326,
    }
    # The payee is told (settlement.paid → notifications.billing: a webhook-only delivery,
    # sent by the scheduler, which this stack does not run).
    assert await _notified(stack, s) == [("webhook", "pending", "Payout of ₹1,093.26 sent")]
    # The next run finds only the reserve, which is held: nothing to pay.
    again = await _settle(stack, payee)
    assert (again.created, again.waiting) == (False, "nothing_payable")
    # The reads and the statement, as finance sees them.
    tok = stack.token("finance-1", Role.finance_admin)
    r = await stack.api.get(f"/v1/settlements/{s.id}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["net_paise"], body["utr"], body["tds_rate"]) == (
        "paid",
        109_326,
        utr,
        "1.00%",
    )
    assert [t["status"] for t in body["transfers"]] == ["success"]
    r = await stack.api.get(
        f"/v1/payees/{payee.id}/settlements", headers={"Authorization": f"Bearer {tok}"}
    )
    assert r.status_code == 200 and [i["id"] for i in r.json()["data"]] == [str(s.id)]
    pdf = await stack.api.get(
        f"/v1/settlements/{s.id}/statement", headers={"Authorization": f"Bearer {tok}"}
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text[:200]
    again_pdf = await stack.api.get(
        f"/v1/settlements/{s.id}/statement", headers={"Authorization": f"Bearer {tok}"}
    )
    assert again_pdf.content == pdf.content  # stored, and served from storage
    await _checks_clean(stack)


async def test_a_net_below_the_minimum_waits_and_posts_nothing(settle_stack: Stack) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 11_000)  # net 9 900 - 89 - 45 - 118 < 10 000
    outcome = await _settle(stack, payee)
    assert (outcome.created, outcome.waiting, outcome.available_paise) == (
        False,
        "below_minimum",
        11_000,
    )
    assert (
        await scalar(
            stack.engine, "SELECT count(*) FROM settlements WHERE payee_id = :p", p=payee.id
        )
        == 0
    )
    assert await payable(stack.engine, payee) == 11_000


async def test_a_payee_in_its_cooling_off_is_not_settled(settle_stack: Stack) -> None:
    stack = settle_stack
    # Its account was just changed: payable only after the cooling-off.
    payee = await make_payee(stack.engine, stack.settings, cooling_off=timedelta(days=2))
    await earn(stack.engine, payee, 50_000)
    outcome = await _settle(stack, payee)
    assert (outcome.created, outcome.waiting) == (False, "not_payable")
    assert await payable(stack.engine, payee) == 50_000


async def test_a_payee_moved_to_an_account_cashfree_refuses_is_not_settled(
    settle_stack: Stack,
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 50_000)
    # Cashfree's invalid test account: its verification says INVALID_BANK_ACCOUNT, so the
    # new version is stored failed, with no beneficiary, and it is the current one.
    account = await move_account(stack.engine, stack.settings, payee, INVALID_ACCOUNT)
    assert (account.verification_status.value, account.beneficiary_id) == ("failed", None)
    outcome = await _settle(stack, payee)
    assert (outcome.created, outcome.waiting) == (False, "not_payable")
    assert await payable(stack.engine, payee) == 50_000
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_retryable_failure_is_paid_under_a_new_transfer_id(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 40_000)
    await payouts.faults(fail_transfers=1, fail_status_code="BENE_BANK_DECLINED")
    s = await _settled(stack, payee)
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(PAYOUT_STEP_S)  # RECEIVED -> PENDING
    await payouts.advance(PAYOUT_STEP_S)  # -> FAILED BENE_BANK_DECLINED (webhook)
    await wait_attempts(stack.engine, s.id, 2)  # the second attempt sent, after the first ended
    await payouts.advance(3 * PAYOUT_STEP_S)
    await wait_status(stack.engine, s.id, {"paid"})
    ids = {f"stl{s.id.hex}a1", f"stl{s.id.hex}a2"}
    transfers = {t["transfer_id"]: t for t in await payouts.transfers(ids)}
    assert {t: (v["status"], v["status_code"]) for t, v in transfers.items()} == {
        f"stl{s.id.hex}a1": ("FAILED", "BENE_BANK_DECLINED"),
        f"stl{s.id.hex}a2": ("SUCCESS", "COMPLETED"),
    }
    journals = await _legs(stack, s)
    assert set(journals) == {"settlement.created", "settlement.paid"}
    await _checks_clean(stack)


async def test_a_failure_needing_new_bank_details_returns_the_money_to_payable(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 40_000)
    await payouts.faults(fail_transfers=1, fail_status_code="INVALID_ACCOUNT_FAIL")
    s = await _settled(stack, payee)
    assert await payable(stack.engine, payee) == 4_000  # the reserve
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(2 * PAYOUT_STEP_S)
    await wait_status(stack.engine, s.id, {"failed"})
    assert await payable(stack.engine, payee) == 40_000
    code = await scalar(stack.engine, "SELECT failure_code FROM settlements WHERE id = :i", i=s.id)
    assert code == "needs_new_bank_details:INVALID_ACCOUNT_FAIL"
    # One attempt only: a destination that is wrong is not tried again.
    assert (
        await scalar(
            stack.engine,
            "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :i",
            i=s.id,
        )
        == 1
    )
    # The payee is told (a billing event).
    assert (
        await scalar(
            stack.engine,
            "SELECT count(*) FROM billing_events WHERE event_type = 'settlement.failed' "
            "AND data->>'settlement_id' = :s",
            s=str(s.id),
        )
        == 1
    )
    assert (await _legs(stack, s))["settlement.failed"][payee.payable_code] == -36_000
    await _checks_clean(stack)


async def test_a_reversal_after_success_returns_the_money_and_the_cash(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 30_000)
    await payouts.faults(reverse_transfers=1, reverse_status_code="ACCOUNT_BLOCKED")
    s = await _settled(stack, payee)
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(3 * PAYOUT_STEP_S)
    await wait_status(stack.engine, s.id, {"paid"})
    await payouts.advance(2 * PAYOUT_STEP_S)  # the reversal lands after COMPLETED
    await wait_status(stack.engine, s.id, {"reversed"})
    assert await payable(stack.engine, payee) == 30_000
    journals = await _legs(stack, s)
    assert set(journals) == {"settlement.created", "settlement.paid", "settlement.reversed"}
    assert journals["settlement.reversed"]["inr:cashfree_payouts_cash"] == s.net_paise
    await _checks_clean(stack)


async def test_a_lost_webhook_is_settled_by_the_status_sync(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 25_000)
    await payouts.faults(webhook_drop_rate=1.0)
    s = await _settled(stack, payee)
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(3 * PAYOUT_STEP_S)
    [delivery, *_] = await payouts.webhooks(f"stl{s.id.hex}a1")
    assert delivery["outcome"] == "dropped"
    assert await scalar(stack.engine, "SELECT status FROM settlements WHERE id = :i", i=s.id) == (
        "processing"
    )
    announced = await sync_open_settlements(
        stack.engine, stack.settings, now=datetime.now(UTC) + timedelta(minutes=5)
    )
    assert announced >= 1
    await wait_status(stack.engine, s.id, {"paid"})
    await _checks_clean(stack)


async def test_duplicate_webhooks_pay_once(settle_stack: Stack, payouts: Payouts) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 25_000)
    await payouts.faults(webhook_duplicates=3)
    s = await _settled(stack, payee)
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(3 * PAYOUT_STEP_S)
    await wait_status(stack.engine, s.id, {"paid"})
    # Every copy was delivered and stored once per identity; each repeat only counted.
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        repeats = await scalar(
            stack.engine,
            "SELECT coalesce(sum(repeats), 0) FROM payout_webhooks WHERE transfer_id = :t",
            t=f"stl{s.id.hex}a1",
        )
        if int(repeats) >= 2:
            break
        await asyncio.sleep(0.1)
    assert int(repeats) >= 2
    assert set(await _legs(stack, s)) == {"settlement.created", "settlement.paid"}
    paid = await scalar(
        stack.engine,
        "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :i AND status = 'success'",
        i=s.id,
    )
    assert paid == 1
    await _checks_clean(stack)


async def test_two_schedulers_racing_make_one_settlement(settle_stack: Stack) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 60_000)
    period, cut_off = f"weekly:race-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    runs = await asyncio.gather(
        *(
            settle_run(
                stack.engine,
                stack.settings,
                by=f"scheduler-{n}",
                payee_id=payee.id,
                period=period,
                cut_off=cut_off,
            )
            for n in range(2)
        )
    )
    made = [o for [o] in runs if o.created]
    assert len(made) == 1
    [other] = [o for [o] in runs if not o.created]
    assert other.settlement is not None and other.settlement.id == made[0].settlement.id  # type: ignore[union-attr]
    assert (
        await scalar(
            stack.engine, "SELECT count(*) FROM settlements WHERE payee_id = :p", p=payee.id
        )
        == 1
    )
    # Another period racing too: the payable is balance-based, nothing is left to take.
    [late] = await settle_run(
        stack.engine,
        stack.settings,
        by="scheduler-2",
        payee_id=payee.id,
        period=f"{period}-next",
        cut_off=cut_off,
    )
    assert (late.created, late.waiting) == (False, "nothing_payable")
    await _checks_clean(stack)


async def test_settle_now_sees_one_payee_through_to_its_utr_and_statement(
    settle_stack: Stack, payouts: Payouts, tmp_path: Path
) -> None:
    stack = settle_stack
    # The sandbox moves this one on its own (as in the demo), a step every 0.2 s.
    await payouts.configure(step_s=0.2)
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 20_000)
    store = LocalDocumentStore(tmp_path)
    done = await settle_now(
        stack.engine,
        stack.settings.model_copy(update={"storage_dir": str(tmp_path)}),
        payee.id,
        store,
        timeout_s=30,
        poll_s=0.2,
    )
    # 20 000: reserve 2 000; gross 18 000; TDS 180; TCS 90; fee 118; net 17 612.
    assert (done.status, done.gross_paise, done.reserve_paise, done.tds_paise) == (
        "paid",
        18_000,
        2_000,
        180,
    )
    assert (done.tcs_paise, done.fee_paise, done.net_paise) == (90, 118, 17_612)
    assert done.utr and done.utr.startswith("SANDBOXUTR")
    assert done.statement_path is not None
    assert done.statement_key is not None
    assert done.statement_path == str(tmp_path / done.statement_key)
    assert (await store.get(done.statement_key)).startswith(b"%PDF")
    await _checks_clean(stack)


async def test_a_reversal_whose_webhook_was_lost_is_found_by_the_sync(
    settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 30_000)
    await payouts.faults(reverse_transfers=1)
    s = await _settled(stack, payee)
    await wait_attempts(stack.engine, s.id, 1)
    await payouts.advance(3 * PAYOUT_STEP_S)
    await wait_status(stack.engine, s.id, {"paid"})
    await payouts.faults(webhook_drop_rate=1.0)
    await payouts.advance(2 * PAYOUT_STEP_S)  # reversed at Cashfree; nobody told us
    [t] = await payouts.transfers({f"stl{s.id.hex}a1"})
    assert t["status"] == "REVERSED"
    # Within the watch, hours later: the sync asks about recently paid settlements too.
    await sync_open_settlements(
        stack.engine, stack.settings, now=datetime.now(UTC) + timedelta(hours=7)
    )
    await wait_status(stack.engine, s.id, {"reversed"})
    assert await payable(stack.engine, payee) == 30_000
    await _checks_clean(stack)


# Cashfree's sandbox test accounts (bank account and IFSC, or a VPA) and how a settlement
# paid to each ends: (status, failure code, transfers tried). Its invalid bank account
# (`026291800001190`) is not among them: bank-account verification refuses it, so it is
# never a payee's payable account (`test_a_payee_moved_to_an_account_cashfree_refuses…`);
# the invalid VPA is the failure that needs new
# details here.
TEST_ACCOUNTS: dict[str, tuple[tuple[str, str] | str, tuple[str, str, int]]] = {
    "invalid VPA": (
        "failure@upi",
        ("failed", "needs_new_bank_details:INVALID_BENE_VPA", 1),
    ),
    "pending, then declined every time": (
        ("7766666351000", "YESB0000001"),
        ("failed", "attempts_exhausted:BENE_BANK_DECLINED", 3),
    ),
    "paid, then reversed": (
        ("7766671735000", "SBIN0000004"),
        ("reversed", "INVALID_ACCOUNT_FAIL", 1),
    ),
}


@pytest.mark.parametrize("case", list(TEST_ACCOUNTS))
async def test_cashfree_test_accounts_end_as_cashfree_says(
    case: str, settle_stack: Stack, payouts: Payouts
) -> None:
    stack = settle_stack
    account, (status, code, tried) = TEST_ACCOUNTS[case]
    if isinstance(account, str):
        payee = await make_payee(stack.engine, stack.settings, vpa=account)
    else:
        payee = await make_payee(stack.engine, stack.settings, bank=account)
    await earn(stack.engine, payee, 30_000)
    s = await _settled(stack, payee)
    for _ in range(60):  # each step moves the sandbox's clock, never waits one out
        await payouts.advance(PAYOUT_STEP_S)
        now = await scalar(stack.engine, "SELECT status FROM settlements WHERE id = :i", i=s.id)
        if now == status:
            break
        await asyncio.sleep(0.2)
    got = await scalar(
        stack.engine,
        "SELECT status || ' ' || failure_code FROM settlements WHERE id = :i",
        i=s.id,
    )
    assert got == f"{status} {code}"
    attempts = await scalar(
        stack.engine, "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :i", i=s.id
    )
    assert attempts == tried
    assert await payable(stack.engine, payee) == 30_000  # all of it owed again
    await _checks_clean(stack)


async def _notified(stack: Stack, s: Settlement) -> list[tuple[str, str, str]]:
    """The settlement's `settlement.paid` deliveries once the worker recorded them."""
    for _ in range(200):
        async with stack.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("""SELECT channel, status, content->'webhook'->>'subject'
                              FROM notification_deliveries WHERE notification_key = :k"""),
                    {"k": f"settlement.paid:{s.id}"},
                )
            ).all()
        if rows:
            return [tuple(r) for r in rows]
        await asyncio.sleep(0.1)
    return []
