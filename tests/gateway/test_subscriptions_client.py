"""Our Subscriptions client against the sandbox over real HTTP: plans, an inline-plan mandate
authorised through the link `create_auth` returns, a charge that lands after the pre-debit
notification (the sandbox clock moved, never slept), listing, cancelling and retrying
payments, managing the mandate, Cashfree's refusals as typed errors, idempotency keys, and
subscription webhooks read by our verifier (forgeries refused); plus the tolerant models on
the drift cashfree.md §12 documents."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeIdempotencyError,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.gateway.sandbox import SandboxConfig, create_sandbox_app
from commdesk_billing.gateway.sandbox.subscriptions.settings import SubscriptionSettings
from commdesk_billing.gateway.signature import sign
from commdesk_billing.gateway.subscription_models import (
    AuthorizationStatus,
    PaymentAction,
    PlanSpec,
    PlanType,
    Subscription,
    SubscriptionAction,
    SubscriptionPayment,
    SubscriptionPaymentStatus,
    SubscriptionRefund,
    SubscriptionRefundStatus,
    SubscriptionStatus,
)
from commdesk_billing.gateway.subscription_webhooks import (
    Refused,
    SubscriptionEvent,
    parse_subscription_webhook,
    read_subscription_webhook,
)
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.security.timestamps import IST
from tests.gateway.sandbox.conftest import AUTH, CLIENT_ID, CLIENT_SECRET, sandbox_config
from tests.gateway.sandbox.servers import Receiver, ServerThread

DAY = 86_400


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ServerThread(create_sandbox_app(sandbox_config())).start()
    yield server.url
    server.stop()


@pytest.fixture
async def cf(base: str) -> AsyncIterator[SubscriptionsClient]:
    async with SubscriptionsClient(
        base_url=f"{base}/pg",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout_s=5,
        backoff_s=0.02,
        max_retries=2,
    ) as client:
        yield client


@pytest.fixture
async def control(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as client:
        yield client


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


async def _clock(control: httpx.AsyncClient, advance_s: float | None = None) -> datetime:
    if advance_s is None:
        answer = await control.get("/_sandbox/clock")
    else:
        answer = await control.post("/_sandbox/clock", json={"advance_seconds": advance_s})
    return datetime.fromisoformat(answer.json()["now"])


async def _morning(control: httpx.AsyncClient) -> date:
    """Move the sandbox to the next 09:00 IST; the next day is then a valid charge date."""
    now = (await _clock(control)).astimezone(IST)
    target = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    moved = await _clock(control, (target - now).total_seconds() + 1)
    return moved.astimezone(IST).date() + timedelta(days=1)


async def _mandate(
    cf: SubscriptionsClient, control: httpx.AsyncClient, method: str = "upi"
) -> Subscription:
    """An inline ON_DEMAND plan, authorised by the payer on the link `create_auth` gave."""
    sub = await cf.create_subscription(
        subscription_id=_id("sub"),
        customer_email="asha@example.com",
        customer_phone="9999999999",
        customer_name="Asha Rao",
        plan=PlanSpec(plan_name="Auto recharge", max_amount_paise=1_000_000),
        authorization_amount_paise=100,
        payment_methods=["upi", "card"],
        return_url="https://merchant.example/mandates/return",
    )
    assert sub.subscription_status == SubscriptionStatus.INITIALIZED
    assert sub.subscription_session_id
    auth = await cf.create_auth(
        subscription_id=sub.subscription_id,
        payment_id=_id("auth"),
        subscription_session_id=sub.subscription_session_id,
    )
    assert auth.payment_type == "AUTH" and auth.payment_amount_paise == 100
    assert auth.data is not None and auth.data.url
    url = urlsplit(auth.data.url)
    form = {k: v[0] for k, v in parse_qs(url.query).items()}
    answer = await control.post(
        url.path, data=form | {"payment_method": method, "outcome": "approve"}
    )
    assert answer.status_code == 200, answer.text
    return await cf.fetch_subscription(sub.subscription_id)


async def test_plans(cf: SubscriptionsClient) -> None:
    plan_id = _id("plan")
    plan = await cf.create_plan(
        plan_id=plan_id,
        plan_name="Monthly top-up",
        plan_type=PlanType.PERIODIC,
        max_amount_paise=500_00,
        recurring_amount_paise=199_00,
        interval_type="MONTH",
        intervals=1,
        note="community credits",
    )
    assert (plan.plan_id, plan.plan_status) == (plan_id, "ACTIVE")
    assert (plan.plan_max_amount_paise, plan.plan_recurring_amount_paise) == (50_000, 19_900)
    fetched = await cf.fetch_plan(plan_id)
    assert fetched == plan
    with pytest.raises(CashfreeConflict) as dup:
        await cf.create_plan(plan_id=plan_id, plan_name="again", max_amount_paise=100)
    assert dup.value.code == "plan_already_exists"
    with pytest.raises(CashfreeNotFound):
        await cf.fetch_plan(_id("none"))


async def test_mandate_and_a_charge_after_the_notice(
    cf: SubscriptionsClient, control: httpx.AsyncClient
) -> None:
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control)
    assert sub.subscription_status == SubscriptionStatus.ACTIVE
    auth = sub.authorization_details
    assert auth is not None and auth.approved
    assert auth.authorization_status == AuthorizationStatus.ACTIVE
    assert auth.payment_method == "upi" and auth.authorization_reference
    assert auth.authorization_time is not None and sub.subscription_expiry_time is not None
    assert sub.plan_details is not None and sub.plan_details.plan_max_amount_paise == 1_000_000
    charge = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=_id("chg"),
        amount_paise=250_50,
        schedule_date=tomorrow,
        remarks="wallet top-up",
    )
    assert charge.payment_status == SubscriptionPaymentStatus.INITIALIZED
    assert charge.payment_amount_paise == 25_050 and charge.payment_initiated_date is not None
    await _clock(control, DAY - 60)
    waiting = await cf.fetch_payment(sub.subscription_id, charge.payment_id)
    assert waiting.payment_status == SubscriptionPaymentStatus.INITIALIZED
    assert waiting.payment_schedule_date is not None
    assert waiting.payment_schedule_date.astimezone(IST).date() == tomorrow
    await _clock(control, 61)
    done = await cf.fetch_payment(sub.subscription_id, charge.payment_id)
    assert done.payment_status == SubscriptionPaymentStatus.SUCCESS and done.cf_txn_id
    assert done.retry_attempts == 0 and done.failure_reason is None
    listed = await cf.list_payments(sub.subscription_id)
    assert [p.payment_type for p in listed] == ["AUTH", "CHARGE"]


async def test_refund_of_a_charge(cf: SubscriptionsClient, control: httpx.AsyncClient) -> None:
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control)
    charge = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=_id("chg"),
        amount_paise=300_00,
        schedule_date=tomorrow,
    )
    await _clock(control, 2 * DAY)
    made = await cf.create_refund(
        subscription_id=sub.subscription_id,
        payment_id=charge.payment_id,
        refund_id="rf_client_1",
        amount_paise=120_55,
        note="Customer asked",
    )
    assert made.refund_status == SubscriptionRefundStatus.PENDING
    assert (made.refund_id, made.refund_amount_paise, made.payment_id) == (
        "rf_client_1",
        120_55,
        charge.payment_id,
    )
    assert made.refund_speed == "STANDARD" and made.cf_refund_id
    # A repeat with the same details is the refund made, not a second one.
    again = await cf.create_refund(
        subscription_id=sub.subscription_id,
        payment_id=charge.payment_id,
        refund_id="rf_client_1",
        amount_paise=120_55,
        note="Customer asked",
    )
    assert again.cf_refund_id == made.cf_refund_id
    deadline = time.monotonic() + 5
    while (got := await cf.fetch_refund(sub.subscription_id, "rf_client_1")).refund_status in (
        SubscriptionRefundStatus.OPEN
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert got.refund_status == SubscriptionRefundStatus.SUCCESS
    with pytest.raises(CashfreeRejected) as over:
        await cf.create_refund(
            subscription_id=sub.subscription_id,
            payment_id=charge.payment_id,
            refund_id="rf_client_2",
            amount_paise=300_00 - 120_55 + 1,
        )
    assert over.value.status == 400 and over.value.code == "refund_amount_invalid"
    with pytest.raises(CashfreeNotFound) as unknown:
        await cf.fetch_refund(sub.subscription_id, "rf_client_2")
    assert unknown.value.code == "refund_not_found"


def test_subscription_refund_model_reads_every_status() -> None:
    for status in ("INITIATED", "initialized", "CANCEL", "FAILED", "SUCCESS"):
        r = SubscriptionRefund.model_validate(
            {
                "refund_id": "r1",
                "refund_amount": Decimal("1.50"),
                "refund_status": status,
                "refund_speed": {"requested": "STANDARD"},
                "cf_refund_id": 12,
                "payment_id": "",
            }
        )
        assert (r.refund_amount_paise, r.refund_speed, r.cf_refund_id, r.payment_id) == (
            150,
            None,
            "12",
            None,
        )
        assert r.refund_status == status.upper()


async def test_refusals_are_typed(cf: SubscriptionsClient, control: httpx.AsyncClient) -> None:
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control, method="card")
    with pytest.raises(CashfreeRejected) as afa:
        await cf.create_charge(
            subscription_id=sub.subscription_id,
            payment_id=_id("chg"),
            amount_paise=15_000_01,
            schedule_date=tomorrow,
        )
    assert afa.value.status == 400 and afa.value.code == "payment_amount_invalid"
    with pytest.raises(CashfreeRejected) as today:
        await cf.create_charge(
            subscription_id=sub.subscription_id,
            payment_id=_id("chg"),
            amount_paise=100,
            schedule_date=tomorrow - timedelta(days=1),
        )
    assert today.value.code == "payment_schedule_date_invalid"
    with pytest.raises(CashfreeNotFound) as missing:
        await cf.fetch_subscription(_id("none"))
    assert missing.value.code == "subscription_does_not_exist"
    with pytest.raises(ValueError):
        await cf.create_subscription(
            subscription_id="x", customer_email="a@b.in", customer_phone="9999999999"
        )


async def test_manage_payment_and_subscription(
    cf: SubscriptionsClient, control: httpx.AsyncClient
) -> None:
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control, method="card")
    first = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=_id("chg"),
        amount_paise=100_00,
        schedule_date=tomorrow,
    )
    cancelled = await cf.manage_payment(sub.subscription_id, first.payment_id, PaymentAction.CANCEL)
    assert cancelled.payment_status == SubscriptionPaymentStatus.CANCELLED
    answer = await control.post(
        f"/_sandbox/subscriptions/{sub.subscription_id}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "CARD_DECLINED", "failed_attempts": 1},
    )
    assert answer.status_code == 200
    second = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=_id("chg"),
        amount_paise=100_00,
        schedule_date=tomorrow,
    )
    await _clock(control, DAY + 1)
    failed = await cf.fetch_payment(sub.subscription_id, second.payment_id)
    assert failed.payment_status == SubscriptionPaymentStatus.FAILED
    assert failed.failure_reason == "CARD_DECLINED"
    held = await cf.fetch_subscription(sub.subscription_id)
    assert held.subscription_status == SubscriptionStatus.ON_HOLD
    active = await cf.manage_subscription(sub.subscription_id, SubscriptionAction.ACTIVATE)
    assert active.subscription_status == SubscriptionStatus.ACTIVE
    now = await _clock(control)
    retried = await cf.manage_payment(
        sub.subscription_id,
        second.payment_id,
        PaymentAction.RETRY,
        next_scheduled_time=now + timedelta(days=2),
    )
    assert retried.payment_status == SubscriptionPaymentStatus.INITIALIZED
    await _clock(control, 2 * DAY + 1)
    done = await cf.fetch_payment(sub.subscription_id, second.payment_id)
    assert done.payment_status == SubscriptionPaymentStatus.SUCCESS
    ended = await cf.manage_subscription(sub.subscription_id, SubscriptionAction.CANCEL)
    assert ended.subscription_status == SubscriptionStatus.CANCELLED
    assert SubscriptionStatus.CANCELLED in SubscriptionStatus.TERMINAL
    with pytest.raises(CashfreeRejected) as again:
        await cf.manage_subscription(sub.subscription_id, SubscriptionAction.CANCEL)
    assert again.value.code == "action_not_allowed"


async def test_idempotency_key(cf: SubscriptionsClient, control: httpx.AsyncClient) -> None:
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control)
    key = _id("key")
    payment_id = _id("chg")
    first = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=payment_id,
        amount_paise=100,
        schedule_date=tomorrow,
        idempotency_key=key,
    )
    replay = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=payment_id,
        amount_paise=100,
        schedule_date=tomorrow,
        idempotency_key=key,
    )
    assert replay == first
    with pytest.raises(CashfreeIdempotencyError):
        await cf.create_charge(
            subscription_id=sub.subscription_id,
            payment_id=payment_id,
            amount_paise=200,
            schedule_date=tomorrow,
            idempotency_key=key,
        )
    # Without a key, a repeat of the same payment_id and details is answered with the first.
    again = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=payment_id,
        amount_paise=100,
        schedule_date=tomorrow,
    )
    assert again.cf_payment_id == first.cf_payment_id


async def test_webhooks_read_by_our_verifier(
    cf: SubscriptionsClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = _id("subs_hooks")
    answer = await control.patch(
        "/_sandbox/subscriptions/settings", json={"webhook_url": receiver.hook(name)}
    )
    assert answer.status_code == 200
    tomorrow = await _morning(control)
    sub = await _mandate(cf, control)
    charge = await cf.create_charge(
        subscription_id=sub.subscription_id,
        payment_id=_id("chg"),
        amount_paise=300_00,
        schedule_date=tomorrow,
    )
    await _clock(control, DAY + 1)
    deadline = time.monotonic() + 5
    while True:
        # Charges of earlier tests' mandates fall due as the clock moves too: only this one's.
        hooks = [h for h in receiver.got(name) if sub.subscription_id.encode() in h.body]
        if len(hooks) >= 4:
            break
        assert time.monotonic() < deadline, f"{len(hooks)} webhooks"
        await asyncio.sleep(0.02)
    read = [read_subscription_webhook(h.body, h.headers, [CLIENT_SECRET]) for h in hooks]
    assert [h.type for h in read] == [
        SubscriptionEvent.AUTH_STATUS,
        SubscriptionEvent.STATUS_CHANGED,
        SubscriptionEvent.PAYMENT_NOTIFICATION_INITIATED,
        SubscriptionEvent.PAYMENT_SUCCESS,
    ]
    assert all(h.subscription_id == sub.subscription_id for h in read)
    status = read[1]
    assert status.subscription_status == SubscriptionStatus.ACTIVE
    assert status.authorization is not None and status.authorization.payment_method == "upi"
    assert status.authorization.payment_method_details is not None
    success = read[3]
    assert success.is_payment_event and success.data.payment_id == charge.payment_id
    assert success.data.payment_amount_paise == 30_000
    # A forged body (signed with another secret) and a tampered one are refused.
    body = hooks[3].body
    stamp = str(int(time.time() * 1000))
    forged = {"x-webhook-timestamp": stamp, "x-webhook-signature": sign("other", stamp, body)}
    with pytest.raises(Refused) as refused:
        read_subscription_webhook(body, forged, [CLIENT_SECRET])
    assert refused.value.code == "webhook_signature_invalid"
    tampered = body.replace(b"300.00", b"900.00")
    with pytest.raises(Refused):
        read_subscription_webhook(tampered, hooks[3].headers, [CLIENT_SECRET])
    pg = json.dumps({"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {}}).encode()
    headers = {"x-webhook-timestamp": stamp, "x-webhook-signature": sign(CLIENT_SECRET, stamp, pg)}
    with pytest.raises(Refused) as unexpected:
        read_subscription_webhook(pg, headers, [CLIENT_SECRET])
    assert unexpected.value.code == "webhook_unexpected"
    await control.patch("/_sandbox/subscriptions/settings", json={"webhook_url": None})


def test_models_tolerate_cashfree_drift() -> None:
    # Cashfree's own SubscriptionEntity example (§12.3): "" for unset, a space for the `T`,
    # a bare-string payment_method, the British `authorisation_details`, INITIALISED.
    sub = Subscription.model_validate(
        {
            "authorisation_details": {
                "authorization_amount": 1,
                "authorization_amount_refund": False,
                "authorization_reference": "",
                "authorization_time": "2022-06-14 23:47:52+05:30",
                "authorization_status": "INITIALISED",
                "payment_id": 97877,
                "payment_method": "NPCI_SBC",
            },
            "cf_subscription_id": "4",
            "plan_details": {"plan_id": "od-20k-plan", "plan_max_amount": 20000},
            "subscription_expiry_time": "2099-01-01 05:29:59+05:30",
            "subscription_id": "SUB0028",
            "subscription_session_id": "subs_token_tc9JCN4MzUIJ",
            "subscription_status": "INITIALISED",
            "next_schedule_date": "",
            "future_field": {"ignored": True},
        }
    )
    assert sub.subscription_status == SubscriptionStatus.INITIALIZED
    auth = sub.authorization_details
    assert auth is not None and auth.authorization_status == "INITIALIZED"
    assert auth.authorization_reference is None and auth.payment_id == "97877"
    assert auth.payment_method == "NPCI_SBC" and auth.payment_method_details is None
    assert auth.authorization_time == datetime.fromisoformat("2022-06-14T18:17:52+00:00")
    assert sub.next_schedule_date is None
    assert sub.plan_details is not None and sub.plan_details.plan_max_amount_paise == 2_000_000
    # A payment's date with an offset without its colon, payment_method as an object.
    payment = SubscriptionPayment.model_validate(
        {
            "payment_id": "p1",
            "payment_status": "SUCCESS",
            "payment_amount": Decimal("1.00"),
            "payment_initiated_date": "2024-04-18T22:14:58+0530",
            "payment_method": {"upi": {"channel": "link"}},
            "failure_details": "",
        }
    )
    assert payment.payment_initiated_date == datetime.fromisoformat("2024-04-18T16:44:58+00:00")
    assert payment.payment_method == "upi" and payment.payment_method_details == {
        "upi": {"channel": "link"}
    }
    assert payment.failure_reason is None and payment.payment_amount_paise == 100


def test_webhook_spellings_of_2023() -> None:
    """Version 2023-08-01: `SUBSCRIPTION_STATUS_CHANGE`, camelCase authorization keys,
    offsetless times (Indian time)."""
    hook = parse_subscription_webhook(
        {
            "type": "SUBSCRIPTION_STATUS_CHANGE",
            "event_time": "2023-08-07T10:30:46",
            "data": {
                "subscription_details": {
                    "subscription_id": "s1",
                    "subscription_status": "ACTIVE",
                },
                "authorization_details": {
                    "authorizationAmount": Decimal("2.00"),
                    "authorizationStatus": "ACTIVE",
                    "authorizationReference": "umn123@okaxis",
                    "approveByTime": "2023-08-08T10:30:47",
                    "paymentId": 991,
                    "paymentMethod": {"upi": {"upi_id": "a@b"}},
                },
            },
        }
    )
    assert hook.type == SubscriptionEvent.STATUS_CHANGED
    assert hook.event_time == datetime.fromisoformat("2023-08-07T05:00:46+00:00")
    assert hook.subscription_id == "s1" and hook.subscription_status == "ACTIVE"
    auth = hook.authorization
    assert auth is not None and auth.approved and auth.payment_id == "991"
    assert auth.authorization_reference == "umn123@okaxis"
    assert auth.authorization_amount_paise == 200 and auth.payment_method == "upi"


async def test_the_factory_builds_a_pg_client_pinned_to_2025(base: str) -> None:
    settings = Settings(
        cashfree_base_url=f"{base}/pg",
        cashfree_client_id=CLIENT_ID,
        cashfree_client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
        cashfree_api_version="2023-08-01",
    )
    async with subscriptions_client(settings) as built:
        with pytest.raises(CashfreeNotFound):
            await built.fetch_plan(_id("none"))  # reached the sandbox with the PG pair
        assert built._api._headers["x-api-version"] == "2025-01-01"


def test_sandbox_subscription_webhook_url_falls_back_to_pg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_SANDBOX_WEBHOOK_URL", "http://pg.example/hooks")
    assert SubscriptionSettings.from_config(SandboxConfig()).webhook_url == (
        "http://pg.example/hooks"
    )
    monkeypatch.setenv("BILLING_SANDBOX_SUBSCRIPTION_WEBHOOK_URL", "http://subs.example/hooks")
    assert SubscriptionSettings.from_config(SandboxConfig()).webhook_url == (
        "http://subs.example/hooks"
    )
    monkeypatch.setenv("BILLING_SANDBOX_SUBSCRIPTION_WEBHOOK_URL", "ftp://nope")
    with pytest.raises(ValueError):
        SandboxConfig()
