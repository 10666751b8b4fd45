"""Our Cashfree client against the sandbox over real HTTP: every call it makes, its typed
errors, and its retries."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeIdempotencyError,
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeUnavailable,
)
from commdesk_billing.security.addresses import forwarded_client, ip_allowed, networks
from commdesk_billing.telemetry.metrics import GATEWAY_CALLS
from tests.harness.stack import Stack, webhook_body


def _client(
    stack: Stack, *, secret: str | None = None, max_retries: int = 3, **kw: Any
) -> CashfreeClient:
    s = stack.settings
    return CashfreeClient(
        base_url=s.cashfree_base_url,
        client_id=s.cashfree_client_id,
        client_secret=secret or s.cashfree_client_secret.get_secret_value(),
        timeout_s=5,
        backoff_s=0.05,
        max_retries=max_retries,
        **kw,
    )


def _expiry() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")


async def test_orders_payments_and_refunds_round_trip(stack: Stack) -> None:
    async with _client(stack) as cf:
        oid = f"cl_{uuid.uuid4().hex[:20]}"
        order = await cf.create_order(
            order_id=oid,
            amount_paise=15_050,
            customer_id="c_123",
            customer_phone="9876543210",
            expiry_time=_expiry(),
            idempotency_key=str(uuid.uuid4()),
        )
        assert (order.order_id, order.order_amount_paise, order.order_status) == (
            oid,
            15_050,
            "ACTIVE",
        )
        assert order.payment_session_id and order.cf_order_id
        assert (await cf.fetch_order(oid)).order_status == "ACTIVE"
        assert await cf.order_payments(oid) == []
        await stack.pay(
            {
                "checkout_url": f"{stack.sandbox_url}/pg/view/checkout?payment_session_id="
                f"{order.payment_session_id}",
                "payment_session_id": order.payment_session_id,
            }
        )
        payments = await cf.order_payments(oid)
        assert [p.payment_status for p in payments] == ["SUCCESS"]
        assert payments[0].payment_amount_paise == 15_050 and payments[0].method == "upi"
        refund = await cf.create_refund(
            order_id=oid,
            refund_id="rf_1",
            amount_paise=5_025,
            note="SUCCESS",
            idempotency_key=str(uuid.uuid4()),
        )
        assert refund.refund_amount_paise == 5_025 and refund.refund_status in (
            "PENDING",
            "SUCCESS",
        )
        assert (await cf.fetch_refund(oid, "rf_1")).refund_id == "rf_1"
        assert [r.refund_id for r in await cf.list_refunds(oid)] == ["rf_1"]
        with pytest.raises(CashfreeNotFound):
            await cf.fetch_order("cl_never_made")


async def test_typed_errors(stack: Stack) -> None:
    async with _client(stack) as cf:
        oid = f"cl_{uuid.uuid4().hex[:20]}"
        key = str(uuid.uuid4())
        args: dict[str, Any] = {
            "order_id": oid,
            "customer_id": "c_123",
            "customer_phone": "9876543210",
            "expiry_time": _expiry(),
        }
        first = await cf.create_order(amount_paise=10_000, idempotency_key=key, **args)
        replay = await cf.create_order(amount_paise=10_000, idempotency_key=key, **args)
        assert replay.payment_session_id == first.payment_session_id
        with pytest.raises(CashfreeIdempotencyError):
            await cf.create_order(amount_paise=20_000, idempotency_key=key, **args)
        with pytest.raises(CashfreeConflict):
            await cf.create_order(amount_paise=10_000, idempotency_key=str(uuid.uuid4()), **args)
        terminated = await cf.terminate_order(oid)
        assert terminated.order_status in ("TERMINATED", "TERMINATION_REQUESTED")
    async with _client(stack, secret="wrong-secret") as bad:
        with pytest.raises(CashfreeAuthError) as err:
            await bad.fetch_order(oid)
        assert err.value.status == 401 and err.value.type == "authentication_error"


async def test_5xx_is_retried_then_surfaced(stack: Stack) -> None:
    await stack.faults(error_rate=1.0)
    calls = GATEWAY_CALLS.labels("fetch_order", "500")
    before = calls._value.get()
    async with _client(stack, max_retries=2) as cf:
        with pytest.raises(CashfreeUnavailable) as err:
            await cf.fetch_order("cl_anything")
        assert err.value.status == 500 and err.value.type == "api_error"
    assert calls._value.get() - before == 3  # the first call and two retries


async def test_a_429_carries_cashfree_retry_hint(stack: Stack) -> None:
    r = await stack.sandbox.patch(
        "/_sandbox/rate-limits", json={"profile": "sandbox", "multiplier": 0.05}
    )
    assert r.status_code == 200, r.text
    limited: CashfreeRateLimited | None = None
    try:
        async with _client(stack, max_retries=0) as cf:
            for _ in range(20):
                try:
                    await cf.fetch_order("cl_anything_else")
                except CashfreeNotFound:
                    continue
                except CashfreeRateLimited as exc:
                    limited = exc
                    break
    finally:
        await stack.sandbox.patch("/_sandbox/rate-limits", json={"profile": "off", "multiplier": 1})
    assert limited is not None, "the rate limit never triggered"
    assert limited.status == 429 and limited.retry_after_s > 0
    assert limited.type == "rate_limit_error"


async def _an_order(stack: Stack) -> str:
    async with _client(stack) as cf:
        oid = f"cl_{uuid.uuid4().hex[:20]}"
        await cf.create_order(
            order_id=oid, amount_paise=10_000, customer_id="c_1", customer_phone="9876543210"
        )
    return oid


async def _get_order_limited(stack: Stack, window_s: float) -> None:
    """`get order` at 3 calls per window (the sandbox profile at 0.05), windows this long."""
    r = await stack.sandbox.patch(
        "/_sandbox/rate-limits",
        json={"profile": "sandbox", "multiplier": 0.05, "window_s": window_s},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"profile": "sandbox", "multiplier": 0.05, "window_s": window_s}


def _counted(op: str, status: str) -> float:
    return float(GATEWAY_CALLS.labels(op, status)._value.get())


async def test_a_short_429_is_waited_out_and_the_call_repeated(stack: Stack) -> None:
    # Where waiting is allowed (60 s by default), a 429 asking for 1 s is slept on.
    oid = await _an_order(stack)
    await _get_order_limited(stack, window_s=1)
    limited, fine = _counted("fetch_order", "429"), _counted("fetch_order", "200")
    try:
        async with _client(stack) as cf:
            for _ in range(3):
                await cf.fetch_order(oid)
            started = time.monotonic()
            order = await cf.fetch_order(oid)
            elapsed = time.monotonic() - started
    finally:
        await stack.sandbox.patch("/_sandbox/rate-limits", json={"profile": "off", "multiplier": 1})
    assert order.order_id == oid
    assert (_counted("fetch_order", "429") - limited, _counted("fetch_order", "200") - fine) == (
        1,
        4,
    )
    assert 1.0 <= elapsed < 2.0, f"waited {elapsed:.2f} s for a 1 s hint"


async def test_a_429_longer_than_the_client_may_wait_is_raised_at_once(stack: Stack) -> None:
    oid = await _an_order(stack)
    limited = _counted("fetch_order", "429")
    try:
        # Our processes' clients may not wait at all: even a 1 s hint is raised.
        await _get_order_limited(stack, window_s=1)
        async with _client(stack, max_rate_limit_wait_s=0) as cf:
            for _ in range(3):
                await cf.fetch_order(oid)
            started = time.monotonic()
            with pytest.raises(CashfreeRateLimited) as short:
                await cf.fetch_order(oid)
            short_s = time.monotonic() - started
        # A client that may wait 5 s does not wait a minute's hint either.
        await _get_order_limited(stack, window_s=60)
        async with _client(stack, max_rate_limit_wait_s=5) as cf:
            for _ in range(3):
                await cf.fetch_order(oid)
            started = time.monotonic()
            with pytest.raises(CashfreeRateLimited) as long:
                await cf.fetch_order(oid)
            long_s = time.monotonic() - started
    finally:
        await stack.sandbox.patch("/_sandbox/rate-limits", json={"profile": "off", "multiplier": 1})
    assert (short.value.status, short.value.retry_after_s) == (429, 1.0)
    assert long.value.status == 429 and 59.0 <= long.value.retry_after_s <= 60.0
    # One 429 each: neither was repeated (max_retries is 3).
    assert _counted("fetch_order", "429") - limited == 2
    assert short_s < 0.5 and long_s < 0.5, (short_s, long_s)


def test_client_ip_believes_only_trusted_proxies(stack: Stack) -> None:
    s = stack.settings.model_copy(
        update={"trusted_proxies": ("10.0.0.0/8",), "webhook_allowed_ips": ("52.66.25.127",)}
    )
    trusted = networks(s.trusted_proxies)

    def client_ip(peer: str, forwarded_for: str) -> str | None:
        return forwarded_client(trusted, peer, [forwarded_for])

    assert client_ip("10.1.2.3", "52.66.25.127") == "52.66.25.127"
    assert client_ip("10.1.2.3", "52.66.25.127, 10.9.9.9") == "52.66.25.127"
    assert client_ip("10.1.2.3", "1.2.3.4, 52.66.25.127") == "52.66.25.127"
    assert client_ip("10.1.2.3", "52.66.25.127, 6.6.6.6") == "6.6.6.6"
    assert client_ip("8.8.8.8", "52.66.25.127") == "8.8.8.8"  # untrusted peer: XFF ignored
    assert ip_allowed(s, "52.66.25.127") and not ip_allowed(s, "8.8.8.8")
    assert not ip_allowed(s, None) and not ip_allowed(s, "not an ip")


async def test_the_allow_list_refuses_other_sources(variant: Any) -> None:
    guarded = await variant(
        webhook_allowed_ips=("52.66.25.127",),
        trusted_proxies=("127.0.0.1",),
    )
    body = webhook_body("cdb_x", order_amount="1.00", payment_amount="1.00", cf_payment_id="1")
    direct = await guarded.signed_webhook(body)
    assert direct.status_code == 403 and direct.json()["code"] == "webhook_source_refused"
    via_proxy = await guarded.signed_webhook(body, extra={"x-forwarded-for": "52.66.25.127"})
    assert via_proxy.status_code == 200 and via_proxy.json()["status"] == "unknown_order"
