"""What became of a recharge: its order opened or its mandate charged (pending credits
shown), the charge announced to the payer (notified), its payment credited (succeeded), or
it failed (pending cleared, back-off, and after N failures in a row, auto-recharge turned off
with an alert).

Lock order everywhere: the wallet's row, then the recharge's (the debit path holds the
wallet's row when it inserts a request), so a crossing and an outcome never deadlock.
Credits are never granted here: the payment's own verified crediting path does that.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.autorecharge import trigger
from commdesk_billing.modules.autorecharge.model import AWAITING, Recharge, RechargeStatus
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.wallet import service as wallet_service
from commdesk_billing.queues import outbox
from commdesk_billing.security.timestamps import IST

log = structlog.get_logger(__name__)

R = RechargeStatus
# A payment in one of these will not pay this recharge (a later success on the same order
# is still credited, and recorded as a late success).
UNPAID_ENDS = frozenset(
    {Status.FAILED, Status.USER_DROPPED, Status.EXPIRED, Status.CANCELLED, Status.REVIEW}
)


def backoff_s(settings: Settings, failures: int) -> int:
    """Exponential: base * 2^(failures-1), at most the max."""
    if failures <= 0:
        return 0
    doubled: int = settings.auto_recharge_backoff_s * (1 << min(failures - 1, 30))
    return min(doubled, settings.auto_recharge_backoff_max_s)


async def locked(conn: AsyncConnection, recharge_id: uuid.UUID) -> Recharge | None:
    """The recharge, its wallet's row locked and then its own (the crossing's order)."""
    found = await repo.get_recharge(conn, recharge_id)
    if found is None:
        return None
    await wallet_service.get_wallet(conn, found.wallet_id, lock=True)
    return await repo.get_recharge(conn, recharge_id, lock=True)


async def opened(
    conn: AsyncConnection,
    recharge_id: uuid.UUID,
    *,
    payment_id: uuid.UUID,
    amount_paise: int,
    credits: int,
    checkout_url: str | None,
) -> bool:
    """The order is open: pending, its credits shown on the wallet, the member told."""
    r = await locked(conn, recharge_id)
    if r is None or r.status is not R.opening:
        return False
    await repo.move(
        conn,
        recharge_id,
        R.pending,
        allowed=frozenset({R.opening}),
        payment_id=payment_id,
        amount_paise=amount_paise,
        credits=credits,
    )
    await wallet_service.add_pending_credits(conn, r.wallet_id, credits)
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    facts: dict[str, Any] = {
        "recharge_id": str(r.id),
        "wallet_id": str(r.wallet_id),
        "user_id": str(wallet.owner_id),
        "payment_id": str(payment_id),
        "checkout_url": checkout_url,
        "amount_paise": amount_paise,
        "credits": credits,
    }
    await repo.log(conn, r.wallet_id, r.id, "checkout_opened", None, facts)
    await outbox.announce(conn, "auto_recharge.checkout_opened", facts, correlation_id=str(r.id))
    return True


async def charged(
    conn: AsyncConnection, recharge_id: uuid.UUID, payment: Payment, mandate_id: uuid.UUID
) -> RechargeStatus | None:
    """The charge is raised on the mandate: pending, its credits shown on the wallet (and
    notified at once when Cashfree's pre-debit notice was seen already). The status it is
    in now (None: it had moved on)."""
    r = await locked(conn, recharge_id)
    if r is None or r.status is not R.opening:
        return None
    await repo.move(
        conn,
        recharge_id,
        R.pending,
        allowed=frozenset({R.opening}),
        payment_id=payment.id,
        amount_paise=payment.amount_paise,
        credits=payment.credits,
    )
    await wallet_service.add_pending_credits(conn, r.wallet_id, payment.credits)
    facts: dict[str, Any] = {
        "recharge_id": str(r.id),
        "payment_id": str(payment.id),
        "mandate_id": str(mandate_id),
        "amount_paise": payment.amount_paise,
        "credits": payment.credits,
        "schedule_date": payment.schedule_date.isoformat() if payment.schedule_date else None,
    }
    await repo.log(conn, r.wallet_id, r.id, "charge_raised", None, facts)
    # The notice's event may have come before this row named its payment: looked at here
    # (and by the settle job), so it is never missed.
    current = await payments.get(conn, payment.id)
    if current is not None and current.pdn_at is not None:
        await notified(conn, payment.id)
        return R.notified
    return R.pending


def debit_on(pdn_at: datetime, schedule: date | None) -> date:
    """The day the debit falls (IST): no earlier than 24 h after the notice, nor than the
    schedule date (cashfree.md §12.5, §15)."""
    earliest = pdn_at.astimezone(IST) + timedelta(hours=24)
    if schedule is not None:
        earliest = max(earliest, datetime.combine(schedule, time(), IST))
    return earliest.astimezone(IST).date()


async def notified(conn: AsyncConnection, payment_id: uuid.UUID) -> bool:
    """Cashfree's pre-debit notice for a recharge's charge was seen: notified, the member
    told when the debit falls (`auto_recharge.notified`). False: no recharge's, or told."""
    found = await repo.by_payment(conn, payment_id)
    if found is None:
        return False
    r = await locked(conn, found.id)
    assert r is not None
    p = await payments.get(conn, payment_id)
    if p is None or p.pdn_at is None:
        return False
    if await repo.move(conn, r.id, R.notified, allowed=frozenset({R.pending})) is None:
        return False
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    facts: dict[str, Any] = {
        "recharge_id": str(r.id),
        "wallet_id": str(r.wallet_id),
        "user_id": str(wallet.owner_id),
        "amount_paise": r.amount_paise,
        "credits": r.credits,
        "debit_on": debit_on(p.pdn_at, p.schedule_date).isoformat(),
    }
    await repo.log(conn, r.wallet_id, r.id, "notified", None, facts | {"payment_id": str(p.id)})
    await outbox.announce(conn, "auto_recharge.notified", facts, correlation_id=str(r.id))
    return True


async def fail(
    conn: AsyncConnection, settings: Settings, recharge_id: uuid.UUID, reason: str
) -> bool:
    """The recharge will not bring its credits: cleared, backed off, maybe disabled."""
    r = await locked(conn, recharge_id)
    if r is None:
        return False
    left = await repo.move(
        conn,
        recharge_id,
        R.failed,
        allowed=frozenset({R.opening, *AWAITING}),
        reason=reason[:200],
        settled_at=datetime.now(UTC),
    )
    if left is None:
        return False
    if left in AWAITING and r.credits:
        await wallet_service.add_pending_credits(conn, r.wallet_id, -r.credits)
    cfg = await repo.get_settings(conn, r.wallet_id, lock=True)
    failures = (cfg.consecutive_failures if cfg else 0) + 1
    retry_at = datetime.now(UTC) + timedelta(seconds=backoff_s(settings, failures))
    await repo.record_failure(conn, r.wallet_id, retry_at)
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    disabling = cfg is not None and cfg.enabled and failures >= cfg.max_consecutive_failures
    # `retry_at` only when `retry_due` may ask again (enabled, not turned off by this
    # failure): the member's notice says "we will try again at" from it.
    retries = cfg is not None and cfg.enabled and not disabling
    facts: dict[str, Any] = {
        "recharge_id": str(r.id),
        "wallet_id": str(r.wallet_id),
        "user_id": str(wallet.owner_id),
        "payment_id": str(r.payment_id) if r.payment_id else None,
        "reason": reason,
        "retry_at": retry_at.isoformat() if retries else None,
        "consecutive_failures": failures,
    }
    await repo.log(conn, r.wallet_id, r.id, "failed", reason, facts)
    await outbox.announce(conn, "auto_recharge.failed", facts, correlation_id=str(r.id))
    if disabling:
        await disable(conn, r.wallet_id, failures=failures, recharge_id=r.id)
    return True


async def disable(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, failures: int, recharge_id: uuid.UUID
) -> None:
    await repo.disable(conn, wallet_id)
    wallet = await wallet_service.get_wallet(conn, wallet_id)
    await wallet_service.configure_auto_recharge(
        conn, wallet_id, enabled=False, threshold=wallet.auto_recharge_threshold, trigger=None
    )
    facts: dict[str, Any] = {
        "wallet_id": str(wallet_id),
        "user_id": str(wallet.owner_id),
        "consecutive_failures": failures,
        "recharge_id": str(recharge_id),
    }
    await repo.log(conn, wallet_id, recharge_id, "disabled", "consecutive_failures", facts)
    await outbox.announce(conn, "auto_recharge.disabled", facts, correlation_id=str(recharge_id))
    # The alert: a member's auto-recharge stopped by itself.
    log.error("auto_recharge.disabled", wallet_id=str(wallet_id), failures=failures)


async def succeed(conn: AsyncConnection, payment_id: uuid.UUID) -> bool:
    """The recharge's payment was credited (by the payments module's verified path)."""
    found = await repo.by_payment(conn, payment_id)
    if found is None:
        return False
    r = await locked(conn, found.id)
    assert r is not None
    # The payment's credits are in the wallet (credited before this is asked). Still below
    # the level: no debit will cross it, so the levels job asks once more after the
    # cooldown — and only then (a refund or expiry later is the member's, not ours).
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    level = wallet.auto_recharge_trigger
    left = await repo.move(
        conn,
        r.id,
        R.succeeded,
        allowed=frozenset({*AWAITING, R.failed}),
        settled_at=datetime.now(UTC),
        left_below=level is not None and wallet.available_credits < level,
    )
    if left is None:
        return False
    if left in AWAITING and r.credits:
        await wallet_service.add_pending_credits(conn, r.wallet_id, -r.credits)
    await repo.record_success(conn, r.wallet_id)
    facts: dict[str, Any] = {
        "recharge_id": str(r.id),
        "wallet_id": str(r.wallet_id),
        "user_id": str(wallet.owner_id),
        "payment_id": str(payment_id),
        "amount_paise": r.amount_paise,
        "credits": r.credits,
    }
    late = "late_payment" if left is R.failed else None
    await repo.log(conn, r.wallet_id, r.id, "succeeded", late, facts)
    await outbox.announce(conn, "auto_recharge.succeeded", facts, correlation_id=str(r.id))
    return True


async def settle_pending(engine: AsyncEngine, settings: Settings, *, limit: int = 200) -> int:
    """The scheduler's job: pending recharges whose payment ended are settled (the
    `payment.credited` consumer usually got there first); how many were settled. Each in
    a transaction of its own: one wallet's lock at a time.

    It walks every pending recharge, a page of `limit` at a time: a mandate charge waits a
    day or more for its debit, so the oldest page can be all still-waiting ones, and a
    newer recharge whose payment ended must not wait behind them for ever."""
    settled = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        page = await in_transaction(
            engine,
            lambda conn, after=after: repo.pending(conn, limit=limit, after=after),  # type: ignore[misc]
        )
        for r in page:

            async def one(conn: AsyncConnection, r: Recharge = r) -> int:
                return await _settle(conn, settings, r)

            settled += await in_transaction(engine, one)
        if len(page) < limit:
            return settled
        last = page[-1]
        assert last.opened_at is not None
        after = (last.opened_at, last.id)


async def _settle(conn: AsyncConnection, settings: Settings, r: Recharge) -> int:
    assert r.payment_id is not None
    p = await payments.get(conn, r.payment_id)
    if p is None:
        return 0
    if p.status is Status.CREDITED:
        return int(await succeed(conn, p.id))
    if p.status in UNPAID_ENDS:
        reason = p.failure_code if p.on_mandate and p.failure_code else None
        return int(await fail(conn, settings, r.id, reason or f"payment_{p.status.value.lower()}"))
    if r.status is R.pending and p.pdn_at is not None:  # its notice's event was missed
        return int(await notified(conn, p.id))
    return 0


async def charge_failed(
    conn: AsyncConnection, settings: Settings, payment_id: uuid.UUID, failure_code: str
) -> bool:
    """`mandate_charge.failed`: a recharge's charge ended unpaid (after UPI's retries, or
    cancelled): the recharge fails now, without waiting for the settle job."""
    found = await repo.by_payment(conn, payment_id)
    if found is None:
        return False
    return await fail(conn, settings, found.id, failure_code)


async def retry_due(engine: AsyncEngine, *, limit: int = 200) -> int:
    """The scheduler's job, after settling: a wallet still below its level when its back-off
    ends is asked for again (`fired / retry_after_backoff`), once per failure; how many."""
    due = await in_transaction(
        engine, lambda conn: repo.retry_candidates(conn, datetime.now(UTC), limit=limit)
    )
    asked = 0
    for wallet_id in due:

        async def one(conn: AsyncConnection, wallet_id: uuid.UUID = wallet_id) -> bool:
            wallet = await wallet_service.get_wallet(conn, wallet_id, lock=True)
            level = wallet.auto_recharge_trigger
            if level is None or wallet.available_credits >= level:
                return False  # off, or above its level again: the next crossing asks
            return await trigger.request(
                conn, wallet, wallet.available_credits, cause="retry_after_backoff"
            )

        asked += await in_transaction(engine, one)
    return asked


# A request still `requested` or `opening` this long after its last move lost its message
# (dead-lettered after Cashfree stayed down past the retries, or lost with a crash): the
# settle job sends it again. Executing is idempotent by the recharge (its order's key), so a
# message that was only slow costs one more no-op.
STALE_S = 900


async def resend_stale(
    engine: AsyncEngine, *, now: datetime | None = None, limit: int = 200
) -> int:
    """The scheduler's job, with settling: requests in flight without an order marked for
    `STALE_S` get their command again, once per stale period; how many."""
    at = now or datetime.now(UTC)
    before = at - timedelta(seconds=STALE_S)
    found = await in_transaction(engine, lambda conn: repo.stale_in_flight(conn, before, limit))
    sent = 0
    for recharge_id in found:

        async def one(conn: AsyncConnection, recharge_id: uuid.UUID = recharge_id) -> bool:
            r = await locked(conn, recharge_id)
            if r is None or not await repo.touch_if_stale(conn, r.id, before, at):
                return False  # moved on since
            await outbox.send(
                conn,
                "payment.processing",
                "auto_recharge.requested",
                {"recharge_id": str(r.id), "wallet_id": str(r.wallet_id)},
                correlation_id=str(r.id),
            )
            log.warning("auto_recharge.request.resent", recharge_id=str(r.id), status=r.status)
            return True

        sent += await in_transaction(engine, one)
    return sent
