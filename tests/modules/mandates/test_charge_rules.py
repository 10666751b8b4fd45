"""Review findings on charges raised on a mandate: the debit date near the 21:00 IST cut-off,
a repeat of a charge on another day, a charge that never reached Cashfree, and a late answer
to the CHARGE call racing the charge's own outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from commdesk_billing import wiring
from commdesk_billing.errors import GatewayRejected, GatewayUnavailable
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import mandate_charges, mandate_raise, mandate_truth
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from commdesk_billing.modules.payments.ordering import Buyer
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.queues import routing
from commdesk_billing.security.timestamps import IST
from tests.harness.stack import Stack
from tests.modules.mandates.conftest import SUBS_HOOK
from tests.modules.mandates.helpers import (
    active,
    advance_to,
    debit_time,
    lost_charge,
    sandbox_now,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("at", "wanted"),
    [
        (datetime(2026, 12, 7, 0, 0, tzinfo=IST), date(2026, 12, 8)),
        (datetime(2026, 12, 7, 20, 0, tzinfo=IST), date(2026, 12, 8)),
        # A charge raised a moment before 21:00 lands at Cashfree after it, where T+1 is no
        # longer allowed: it must already ask for T+2.
        (datetime(2026, 12, 7, 20, 59, 30, tzinfo=IST), date(2026, 12, 9)),
        (datetime(2026, 12, 7, 20, 50, tzinfo=IST), date(2026, 12, 9)),
        (datetime(2026, 12, 7, 21, 0, tzinfo=IST), date(2026, 12, 9)),
        (datetime(2026, 12, 7, 23, 59, tzinfo=IST), date(2026, 12, 9)),
    ],
)
def test_the_earliest_debit_day_keeps_clear_of_the_cut_off(at: datetime, wanted: date) -> None:
    assert earliest_schedule_date(at) == wanted
    # Whatever the zone the moment is given in.
    assert earliest_schedule_date(at.astimezone(IST).astimezone(tz=None)) == wanted


async def _subject(stack: Stack, mandate_id: str) -> str:
    return str(
        await stack.scalar(
            "SELECT u.external_id FROM users u JOIN mandates m ON m.user_id = u.id WHERE m.id = :m",
            m=uuid.UUID(mandate_id),
        )
    )


async def test_a_repeat_on_another_day_resumes_the_same_charge(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    """The caller lets the debit day default, Cashfree's answer is lost, and the caller
    repeats (same key) once the default day has moved on: the repeat is the same request and
    raises the charge for the day the row holds, never refused as another request."""
    tok = subs.token()
    m = await active(subs, tok)
    buyer = Buyer.system("auto-recharge", await _subject(subs, m["id"]), "w1:1")
    req = OrderRequest(pack_code="pack_150", customer_phone="9876543210")
    then = await sandbox_now(subs) + timedelta(days=1)
    await subs.faults(error_rate=1.0)
    try:
        with pytest.raises(GatewayUnavailable):
            await mandate_charges.open_mandate_charge(
                subs.engine,
                subs_client,
                subs.settings,
                buyer,
                req,
                m["subscription_id"],
                max_amount_paise=m["max_amount_paise"],
                now=then,
            )
    finally:
        await subs.faults(error_rate=0.0)
    payment = await mandate_charges.open_mandate_charge(
        subs.engine,
        subs_client,
        subs.settings,
        buyer,
        req,
        m["subscription_id"],
        max_amount_paise=m["max_amount_paise"],
        now=then - timedelta(days=1),
    )
    assert payment.status.value == "ACTIVE"
    assert payment.schedule_date == earliest_schedule_date(then)
    charges = [
        p
        for p in await subs_client.list_payments(m["subscription_id"])
        if p.payment_type == "CHARGE"
    ]
    assert [(p.payment_id, p.payment_amount_paise) for p in charges] == [(payment.order_id, 15_000)]


async def test_a_charge_that_never_reached_cashfree_is_announced_when_written_off(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    """The CHARGE call never reached Cashfree and nobody repeated it: once past its window the
    sync writes it off, and whoever raised it (auto-recharge's pending recharge, a renewal) is
    told, as for any charge that ends unpaid."""
    routing.install(
        routing.Table(wiring.TABLE.routes | {("notifications.billing", "mandate_charge.failed")})
    )
    try:
        tok = subs.token()
        m = await active(subs, tok)
        p = await lost_charge(
            subs,
            subs_client,
            m,
            amount_paise=20_000,
            # Long past (our clock): the charge's window is over.
            schedule=datetime.now(IST).date() - timedelta(days=10),
        )
        status = await mandate_truth.verify_charge(
            subs.engine, subs_client, subs.settings, p, source="sync"
        )
        assert status.value == "CANCELLED"
        announced = await subs.scalar(
            "SELECT json_agg(body::json -> 'payload' ->> 'status') FROM outbox "
            "WHERE message_type = 'mandate_charge.failed' AND queue = 'notifications.billing' "
            "AND body::json -> 'payload' ->> 'payment_id' = :p",
            p=str(p.id),
        )
        assert announced == ["CANCELLED"]
    finally:
        wiring.install()


async def test_a_late_answer_to_the_charge_call_does_not_reopen_a_failed_charge(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    """A repeat of the CHARGE call (it read the row CREATED) whose answer arrives after the
    charge was found at Cashfree and had failed for good: the payment stays FAILED (reopened,
    the sync would fail it again and announce the failure twice)."""
    tok = subs.token()
    m = await active(subs, tok)
    r = await subs.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "INSUFFICIENT_FUNDS"},
    )
    assert r.status_code == 200, r.text
    raised = await sandbox_now(subs)
    day = earliest_schedule_date(raised)
    stale = await lost_charge(subs, subs_client, m, amount_paise=20_000, schedule=day)
    # The call did reach Cashfree; its charge fails (first attempt and the three retries).
    await subs_client.create_charge(
        subscription_id=m["subscription_id"],
        payment_id=stale.order_id,
        amount_paise=20_000,
        schedule_date=day,
        remarks=f"CommDesk credits {stale.pack_code or 'top-up'}"[:60],
    )
    # Past the first attempt and the three hourly retries.
    await advance_to(subs, debit_time(raised, day) + timedelta(hours=3, minutes=30))
    status = await mandate_truth.verify_charge(
        subs.engine, subs_client, subs.settings, stale, source="sync"
    )
    assert status.value == "FAILED"
    # The concurrent repeat that read CREATED now gets Cashfree's answer.
    await mandate_raise.raise_charge(subs.engine, subs_client, stale)
    async with subs.engine.connect() as conn:
        after = await payments_repo.get(conn, stale.id)
    assert after is not None and after.status.value == "FAILED"


async def test_another_amount_seen_before_the_debit_goes_to_review_at_once(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    """Cashfree holds a charge under our id for another amount, and the pre-debit notice's
    look at its API sees it before anyone repeats the CHARGE call: the payment goes to REVIEW
    then (not ACTIVE, as if all were well, until the debit), and a repeat is told."""
    tok = subs.token()
    m = await active(subs, tok)
    day = earliest_schedule_date(await sandbox_now(subs))
    order_id = (
        await lost_charge(subs, subs_client, m, pack_code="pack_150", schedule=day)
    ).order_id
    await subs_client.create_charge(
        subscription_id=m["subscription_id"],
        payment_id=order_id,
        amount_paise=14_000,
        schedule_date=day,
    )

    async def moved() -> Any:
        return await subs.scalar("SELECT status FROM payments WHERE order_id = :o", o=order_id)

    status = "CREATED"
    for _ in range(200):  # the notice's webhook, then the worker's look at Cashfree
        status = await moved()
        if status != "CREATED":
            break
        await asyncio.sleep(0.1)
    assert status == "REVIEW"
    with pytest.raises(GatewayRejected):
        await mandates.charge(
            subs.engine,
            subs_client,
            subs.settings,
            uuid.UUID(m["id"]),
            key="recharge-1",
            pack_code="pack_150",
            schedule=day,
        )


async def test_unpaid_checkout_orders_do_not_block_a_charge_on_the_mandate(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    """The open-order limit bounds a member's unpaid checkouts; a charge on their mandate is
    raised by CommDesk (its caller bounds those) and is not refused because of them."""
    tok = subs.token()
    m = await active(subs, tok)
    day = earliest_schedule_date(await sandbox_now(subs))
    settings = subs.settings.model_copy(update={"max_open_orders_per_user": 2})
    seed = await mandates.charge(
        subs.engine,
        subs_client,
        settings,
        uuid.UUID(m["id"]),
        key="seed",
        pack_code="pack_150",
        schedule=day,
    )
    # Two unpaid checkout orders of the member's, as the order path leaves them (copied from
    # the charge's row: this stack's sandbox clock has been moved by days, so its PG takes no
    # new order).
    for _ in range(2):
        await subs.execute(
            "INSERT INTO payments SELECT (jsonb_populate_record(NULL::payments, to_jsonb(p) "
            "|| jsonb_build_object('id', gen_random_uuid(), 'order_id', "
            "'cdb_' || md5(random()::text), 'idempotency_key', md5(random()::text), "
            "'channel', 'order', 'subscription_id', NULL, 'schedule_date', NULL, "
            "'cashfree_order_id', NULL, 'order_expires_at', now() + interval '1 hour'))).* "
            "FROM payments p WHERE p.id = :seed",
            seed=seed.id,
        )
    payment = await mandates.charge(
        subs.engine,
        subs_client,
        settings,
        uuid.UUID(m["id"]),
        key="recharge-1",
        pack_code="pack_150",
        schedule=day,
    )
    assert payment.status.value == "ACTIVE" and payment.id != seed.id


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"text"',
        b'{"type": 5, "data": []}',
        b'{"type": "SUBSCRIPTION_PAYMENT_SUCCESS", "data": {"payment_id": "\\u0000x"}}',
        b'{"type": "SUBSCRIPTION_PAYMENT_SUCCESS", "data": {"payment_amount": "1e999999"}}',
        b'{"type": "SUBSCRIPTION_STATUS_CHANGED", "data": {"subscription_details": 7}}',
        b'{"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {}}',
        b"\xff\xfe\x00",
    ],
)
async def test_junk_at_the_subscription_receiver_is_never_a_500(subs: Stack, body: bytes) -> None:
    """Unsigned junk: 401, nothing stored. The same junk signed: stored as rejected (or
    taken as a delivery about nothing of ours), answered 200."""
    secret = subs.settings.cashfree_client_secret.get_secret_value()
    stored = await subs.scalar("SELECT count(*) FROM subscription_webhooks")
    ts = str(int(time.time() * 1000))
    headers = {"content-type": "application/json", "x-webhook-timestamp": ts}
    r = await subs.api.post(
        SUBS_HOOK, content=body, headers={**headers, "x-webhook-signature": "AAAA"}
    )
    assert r.status_code == 401, r.text
    assert await subs.scalar("SELECT count(*) FROM subscription_webhooks") == stored
    r = await subs.api.post(
        SUBS_HOOK,
        content=body,
        headers={**headers, "x-webhook-signature": signature.sign(secret, ts, body)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("rejected", "duplicate", "unknown_subscription")
