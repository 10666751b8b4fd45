"""The seed's analytics as metrics, on the real purchase path: what a payment, a failure and
a refund count (once, after commit), and the revenue the scheduler reads from the ledger."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.metrics_snapshot import MetricsSnapshot
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.payments.labels import FAILURE_REASONS, failure_reason
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.health import HealthServer
from tests.harness.stack import StackFactory


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("to", "given", "label"),
    [
        (Status.FAILED, {"error_reason": "bank_rejected"}, "bank_rejected"),
        (Status.FAILED, {"error_code": "TRANSACTION_DECLINED"}, "bank_rejected"),
        (Status.FAILED, {"error_reason": "INSUFFICIENT_FUNDS_IN_ACCOUNT"}, "insufficient_funds"),
        (Status.FAILED, {"description": "Incorrect UPI PIN entered"}, "authentication_failed"),
        (Status.FAILED, {"error_reason": "invalid_vpa"}, "invalid_instrument"),
        (Status.FAILED, {"error_code": "PAYMENT_LIMIT_EXCEEDED"}, "limit_exceeded"),
        (Status.FAILED, {"error_reason": "something new from cashfree"}, "other"),
        (Status.FAILED, {}, "other"),
        (Status.USER_DROPPED, {"error_reason": "bank_rejected"}, "user_dropped"),
        (Status.EXPIRED, {}, "order_expired"),
        (Status.CANCELLED, {"error_code": None}, "order_cancelled"),
    ],
)
def test_failure_reasons_are_a_fixed_vocabulary(
    to: Status, given: dict[str, str | None], label: str
) -> None:
    got = failure_reason(to, **given)
    assert got == label and got in FAILURE_REASONS


async def test_a_transaction_is_counted_once_after_it_commits(engine: AsyncEngine) -> None:
    registry = CollectorRegistry()
    counted = Counter("t_work", "work done", registry=registry)
    runs = 0

    async def collides_once(conn: AsyncConnection) -> None:
        nonlocal runs
        runs += 1
        aftercommit.count(conn, counted, 2)
        if runs == 1:  # a serialization failure: in_transaction runs the whole work again
            await conn.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'collide' USING ERRCODE = '40001'; END $$")
            )

    await in_transaction(engine, collides_once)
    assert runs == 2 and registry.get_sample_value("t_work_total") == 2

    async def refused(conn: AsyncConnection) -> None:
        aftercommit.count(conn, counted, 5)
        raise LookupError("refused after counting")

    with pytest.raises(LookupError):
        await in_transaction(engine, refused)
    assert registry.get_sample_value("t_work_total") == 2  # rolled back: nothing counted


async def test_purchases_failures_refunds_and_revenue(stacks: StackFactory) -> None:
    stack = await stacks()
    paid_before = value("billing_payments_succeeded_total", channel="checkout", kind="pack")
    bought_before = value("billing_credit_purchases_total", pack="pack_300", channel="checkout")
    credits_before = value("billing_credits_purchased_total", pack="pack_300", channel="checkout")
    failed_before = value("billing_payments_failed_total", reason="bank_rejected")
    refunds_before = value("billing_refunds_created_total")
    refunded_before = value("billing_refunds_finished_total", status="success")

    _, credited = await stack.credited(pack_code="pack_300")
    buyer = stack.token()
    other = await stack.buy(buyer, pack_code="pack_150")
    await stack.pay(other, "upi", "failure")
    await stack.wait_status(buyer, other["id"], {"FAILED"})

    assert value("billing_payments_succeeded_total", channel="checkout", kind="pack") == (
        paid_before + 1
    )
    assert (
        value("billing_credit_purchases_total", pack="pack_300", channel="checkout")
        == bought_before + 1
    )
    assert (
        value("billing_credits_purchased_total", pack="pack_300", channel="checkout")
        == credits_before + credited["credits_granted"]
        == credits_before + 3200
    )
    assert value("billing_payments_failed_total", reason="bank_rejected") == failed_before + 1

    # Revenue from the books: ₹300 bought, none consumed: its taxable value is deferred.
    snapshot = MetricsSnapshot(stack.settings, stack.engine)
    try:
        assert await snapshot.run()
        assert value("billing_revenue_paise", kind="deferred") == credited["taxable_paise"] == 25424
        assert value("billing_revenue_paise", kind="recognized") == 0
        assert value("billing_ledger_house_balance_paise", account="inr:gst_payable") == 4576
        # pack_300: 3000 credits bought and 200 of bonus, from two issuance accounts.
        issued = "billing_ledger_house_balance_credits"
        assert value(issued, account="credits:issuance:purchase") == 3000
        assert value(issued, account="credits:issuance:bonus") == 200
        for dependency in ("postgresql", "redis", "rabbitmq"):
            assert value("billing_dependency_up", dependency=dependency) == 1, dependency
        assert value("billing_queue_consumers", queue="wallet.credit") >= 1
        assert (
            0 < value("billing_postgres_connections") <= value("billing_postgres_max_connections")
        )
        assert value("billing_wallets_negative") == 0

        # Sealed, the same figures come from the kept sums of the sealed prefix.
        await seal_pending(stack.engine)
        assert await snapshot.run()
        assert value("billing_revenue_paise", kind="deferred") == 25424

        r = await stack.refund(credited["id"])
        assert r.status_code in (200, 201, 202), r.text
        await stack.wait_refund(r.json()["id"], {"SUCCESS"})
        assert value("billing_refunds_created_total") == refunds_before + 1
        assert value("billing_refunds_finished_total", status="success") == refunded_before + 1
        assert await snapshot.run()
        # Refunded in full: nothing deferred any more (sealed sums plus the new tail).
        assert value("billing_revenue_paise", kind="deferred") == 0
    finally:
        await snapshot.aclose()


def test_the_worker_metrics_carry_its_readiness() -> None:
    server = HealthServer(0, lambda: {"broker": False, "consumers": True})
    body = server.answer("/metrics").decode()
    assert 'billing_process_ready{check="broker"} 0.0' in body
    assert 'billing_process_ready{check="consumers"} 1.0' in body
