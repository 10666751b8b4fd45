"""The insufficient-credits policy of a meter: reject, or a bounded overdraft whose debt the
next credits into the wallet repay, once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import invariants
from commdesk_billing.modules.usage.consumers import repay_debts
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.queues.envelope import new_envelope
from tests.conftest import grant_bought
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]


async def _books_clean(usage: Usage) -> None:
    report = await verify_ledger(usage.engine, checks=list(invariants.CHECKS))
    assert report.findings == []


async def test_reject_policy_records_the_refusal_and_debits_nothing(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(5)
    meter = usage.meter()
    await usage.price(meter, [(None, 2000)], policy="reject")
    at = datetime.now(UTC) - timedelta(minutes=1)
    results = await usage.accepted(
        [
            event("j1", meter, 2, wallet.id, at),  # 4 of 5
            event("j2", meter, 1, wallet.id, at),  # 2 more: only 1 left
            event("j3", meter, 1, wallet.id, at - timedelta(seconds=1)),
        ]
    )
    assert [(x["status"], x["reason"], x["credits"], x["debited_credits"]) for x in results] == [
        ("accepted", None, 4, 4),
        ("rejected", "insufficient_credits", 2, 0),
        ("rejected", "insufficient_credits", 2, 0),
    ]
    assert results[1]["recorded"] is True
    f = await usage.figures(wallet.id)
    assert (f.available, f.usage_lines, f.events) == (1, 1, 3)
    # The refusal is the event's one effect: a replay after a top-up is a duplicate of it.
    await in_transaction(
        usage.engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=100,
            source=LotSource.promotional,
            idempotency_key=f"top-{uuid.uuid4()}",
            reason="top-up",
        ),
    )
    again = await usage.accepted([event("j2", meter, 1, wallet.id, at)])
    assert (again[0]["status"], again[0]["reason"]) == ("duplicate", "insufficient_credits")
    summary = await usage.summary(wallet.id, meter=meter)
    assert (summary["events"], summary["rejected_events"], summary["credits"]) == (1, 2, 4)
    await _books_clean(usage)


async def test_overdraft_within_the_bound_owes_the_rest_and_beyond_it_rejects(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(5)
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=20)
    at = datetime.now(UTC) - timedelta(minutes=1)
    results = await usage.accepted(
        [
            event("o1", meter, 10, wallet.id, at),  # 5 debited, 5 owed
            event("o2", meter, 16, wallet.id, at),  # would owe 21 > 20: rejected whole
            event("o3", meter, 15, wallet.id, at),  # owes 20: at the bound
            event("o4", meter, 1, wallet.id, at),  # 21: rejected
        ]
    )
    assert [
        (x["status"], x["reason"], x["credits"], x["debited_credits"], x["debt_credits"])
        for x in results
    ] == [
        ("accepted", None, 10, 5, 5),
        ("rejected", "overdraft_limit_exceeded", 16, 0, 0),
        ("accepted", None, 15, 0, 15),
        ("rejected", "overdraft_limit_exceeded", 1, 0, 0),
    ]
    f = await usage.figures(wallet.id)
    assert (f.available, f.usage_lines) == (0, 1)
    summary = await usage.summary(wallet.id)
    assert summary["debt_outstanding_credits"] == 20
    assert summary["debts"] == [
        {"meter": meter, "incurred_credits": 20, "repaid_credits": 0, "outstanding_credits": 20}
    ]
    assert (summary["credits"], summary["debited_credits"], summary["debt_credits"]) == (25, 5, 20)
    await _books_clean(usage)


async def test_a_purchase_repays_the_debt_once(usage: Usage, make_wallet: MakeWallet) -> None:
    wallet = await make_wallet(0)
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=50)
    at = datetime.now(UTC) - timedelta(minutes=1)
    await usage.accepted([event("d1", meter, 30, wallet.id, at)])
    assert (await usage.summary(wallet.id))["debt_outstanding_credits"] == 30
    # Credits arrive (a purchase's lots, with their basis) and payment.credited is announced.
    payment_id = uuid.uuid4()
    await in_transaction(
        usage.engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=100,
            source=LotSource.purchase,
            idempotency_key=f"payment:{payment_id}:purchase",
            reason="purchase",
            paid_paise=1000,
            taxable_paise=847,
        ),
    )
    envelope = new_envelope(
        "payment.credited",
        {"payment_id": str(payment_id), "wallet_id": str(wallet.id), "credits": 100},
    )
    await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    after = await usage.figures(wallet.id)
    assert after.available == 70
    # Delivered again (or another credit event for the wallet): the debt is paid, nothing moves.
    await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    assert await usage.figures(wallet.id) == after
    summary = await usage.summary(wallet.id)
    assert summary["debts"] == [
        {"meter": meter, "incurred_credits": 30, "repaid_credits": 30, "outstanding_credits": 0}
    ]
    await _books_clean(usage)


async def test_a_partial_credit_repays_part_and_a_usage_batch_repays_the_rest_first(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(0)
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=50)
    at = datetime.now(UTC) - timedelta(minutes=1)
    await usage.accepted([event("q1", meter, 30, wallet.id, at)])

    async def grant(credits: int) -> None:
        await in_transaction(
            usage.engine,
            lambda c: grant_bought(
                c,
                wallet_id=wallet.id,
                credits=credits,
                source=LotSource.promotional,
                idempotency_key=f"promo-{uuid.uuid4()}",
                reason="promo",
            ),
        )

    await grant(10)
    envelope = new_envelope(
        "payment.credited", {"payment_id": str(uuid.uuid4()), "wallet_id": str(wallet.id)}
    )
    await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    assert (await usage.figures(wallet.id)).available == 0
    assert (await usage.summary(wallet.id))["debt_outstanding_credits"] == 20
    # A grant (its `wallet.credits_available` is not consumed here): the next usage batch
    # repays the debt before rating.
    await grant(50)
    results = await usage.accepted([event("q2", meter, 5, wallet.id, at)])
    assert (results[0]["debited_credits"], results[0]["debt_credits"]) == (5, 0)
    assert (await usage.figures(wallet.id)).available == 25
    assert (await usage.summary(wallet.id))["debt_outstanding_credits"] == 0
    await _books_clean(usage)


async def test_a_lower_bound_or_a_reject_price_later_keeps_the_old_debt_and_owes_no_more(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(0)
    meter = usage.meter()
    now = datetime.now(UTC)
    await usage.price(
        meter, [(None, 1000)], policy="overdraft", limit=50, effective_from=now - timedelta(hours=3)
    )
    await usage.accepted([event("l1", meter, 40, wallet.id, now - timedelta(hours=2))])
    await usage.price(
        meter, [(None, 1000)], policy="overdraft", limit=30, effective_from=now - timedelta(hours=1)
    )
    lower = await usage.accepted([event("l2", meter, 1, wallet.id, now - timedelta(minutes=30))])
    assert (lower[0]["status"], lower[0]["reason"]) == ("rejected", "overdraft_limit_exceeded")
    await usage.price(
        meter, [(None, 1000)], policy="reject", effective_from=now - timedelta(minutes=10)
    )
    rejected = await usage.accepted([event("l3", meter, 1, wallet.id, now)])
    assert (rejected[0]["status"], rejected[0]["reason"]) == ("rejected", "insufficient_credits")
    assert (await usage.summary(wallet.id))["debt_outstanding_credits"] == 40
    await _books_clean(usage)


async def test_held_credits_are_not_used_to_repay_debt(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    """Credits arrive, the member places a hold on most of them before the repayment runs:
    the repayment takes only what is still available, and the hold stays whole."""
    wallet = await make_wallet(0)
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=100)
    at = datetime.now(UTC) - timedelta(minutes=1)
    (owed,) = await usage.accepted([event("h1", meter, 50, wallet.id, at)])
    assert (owed["debited_credits"], owed["debt_credits"]) == (0, 50)
    await in_transaction(
        usage.engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=100,
            source=LotSource.promotional,
            idempotency_key=f"h-{uuid.uuid4()}",
            reason="top-up",
        ),
    )
    await in_transaction(
        usage.engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=80,
            idempotency_key=f"hold-{uuid.uuid4()}",
            reason="a spend in flight",
            ttl_s=3600,
        ),
    )
    envelope = new_envelope(
        "payment.credited", {"payment_id": str(uuid.uuid4()), "wallet_id": str(wallet.id)}
    )
    await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    async with usage.engine.connect() as conn:
        after = await ws.get_wallet(conn, wallet.id)
    assert (after.available_credits, after.locked_credits) == (0, 80)
    assert (await usage.summary(wallet.id))["debt_outstanding_credits"] == 30
    await _books_clean(usage)
