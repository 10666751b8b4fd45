"""Scoring a purchase before its order opens: lists, features, the rules, the decision.

`screen_order` runs inside the transaction that would write the payment row (payments'
`ordering`), so its reads and the row agree; it decides and writes nothing. The caller
then either records the screening with the payment (`record_order`: the assessment, one
`fraud_events` row per rule that fired, and a review when the score asks for one), or,
for a block, rolls its transaction back and records the screening alone
(`record_blocked`): no payment, no order, no wallet — the refusal and its reasons only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.fraud import history, velocity
from commdesk_billing.modules.fraud import repository as repo
from commdesk_billing.modules.fraud.rules import Action, Features, Fired, Thresholds, Verdict, score
from commdesk_billing.modules.fraud.service import recorded
from commdesk_billing.modules.users import service as users

log = structlog.get_logger(__name__)

# What payments records when Cashfree's word disagrees with ours (a webhook's amount, an
# order's identity): the `webhook_mismatch` rule counts these against the buyer.
MISMATCH_KINDS = [
    "webhook_amount_mismatch",
    "webhook_content_mismatch",
    "order_mismatch",
    "order_mismatch_at_create",
    "payment_amount_mismatch",
    "charge_mismatch",
    "charge_mismatch_at_create",
]
MISMATCH_WINDOW = timedelta(days=30)
# "Ever", for purchases and refunds.
HISTORY_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Context:
    """Where an order request came from, as the API saw it."""

    ip: str | None
    device_id: str | None
    store: RedisStore | None


@dataclass(frozen=True)
class OrderAttempt:
    subject: str
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    # Names the attempt in the velocity windows (the buyer's scoped idempotency key).
    attempt_key: str
    amount_paise: int
    # Buys a pack (not a custom amount): `largest_pack` when it is the dearest on sale.
    buys_pack: bool
    ip: str | None
    device_id: str | None


@dataclass(frozen=True)
class Screening:
    id: uuid.UUID
    attempt: OrderAttempt
    verdict: Verdict
    listed: str | None  # "allow" / "deny": a list decided, not the rules
    features: Features

    @property
    def action(self) -> Action:
        return self.verdict.action


def _severity(weight: int) -> str:
    return "high" if weight >= 40 else "medium" if weight >= 25 else "low"


async def screen_order(
    conn: AsyncConnection, ctx: Context, settings: Settings, attempt: OrderAttempt
) -> Screening:
    t = Thresholds.of(settings)
    entries = [("user", str(attempt.user_id))]
    entries += [("device", attempt.device_id)] if attempt.device_id else []
    entries += [("ip", attempt.ip)] if attempt.ip else []
    now = datetime.now(UTC)
    # The lists and the whole history in one statement (before the velocity windows: a
    # listed attempt is not counted in them).
    facts = await history.read(
        conn,
        entries=entries,
        user_id=attempt.user_id,
        wallet_id=attempt.wallet_id,
        amount_paise=attempt.amount_paise,
        window=now - timedelta(seconds=settings.fraud_window_s),
        epoch=HISTORY_EPOCH,
        dup_since=now - timedelta(seconds=settings.fraud_duplicate_window_s),
        mismatch_kinds=MISMATCH_KINDS,
        mismatch_since=now - MISMATCH_WINDOW,
    )
    on = facts.listed
    sid = uuid.uuid4()
    if "deny" in on.values():
        kinds = sorted(k for k, v in on.items() if v == "deny")
        fired = (Fired("deny_list", 100, {"listed": kinds}),)
        return Screening(sid, attempt, Verdict(100, Action.block, fired), "deny", Features())
    if "allow" in on.values():
        # Allow-listed: not scored at all (and not counted in the windows).
        return Screening(sid, attempt, Verdict(0, Action.allow), "allow", Features())
    features = await order_features(conn, ctx.store, settings, attempt, facts, now)
    return Screening(sid, attempt, score(features, t), None, features)


async def order_features(
    conn: AsyncConnection,
    store: RedisStore | None,
    settings: Settings,
    a: OrderAttempt,
    facts: history.Facts,
    now: datetime,
) -> Features:
    touches = [velocity.Touch("user", str(a.user_id), a.attempt_key)]
    if a.ip:
        touches.append(velocity.Touch("ip", a.ip, a.attempt_key))
    if a.device_id:
        touches.append(velocity.Touch("device", a.device_id, a.attempt_key))
    counts = await velocity.count(
        conn, store, touches, user_id=str(a.user_id), window_s=settings.fraud_window_s
    )
    created = facts.created_at
    bought = facts.bought
    return Features(
        user_attempts=counts.attempts.get("user"),
        ip_attempts=counts.attempts.get("ip"),
        device_attempts=counts.attempts.get("device"),
        device_accounts=counts.accounts.get("device"),
        failed_attempts=facts.failed,
        account_age_s=int((now - created).total_seconds()) if created else 0,
        # A pack (not a custom amount) at the price of the largest one on sale.
        largest_pack=a.buys_pack and a.amount_paise >= facts.top_pack_paise > 0,
        recent_same_amount_paid=facts.duplicates if settings.fraud_duplicate_window_s > 0 else 0,
        purchases=facts.purchases,
        refunds=facts.refunds,
        drained_share_bp=facts.drained * 10_000 // bought if bought else None,
        mismatches=facts.mismatches,
    )


async def _record(
    conn: AsyncConnection,
    s: Screening,
    *,
    user_id: uuid.UUID,
    payment_id: uuid.UUID | None,
    stage: str = "order",
    instrument: str | None = None,
) -> bool:
    a = s.attempt
    events: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "kind": f.rule,
            "severity": "high" if f.rule == "deny_list" else _severity(f.weight),
            "details": {
                "rule": f.rule,
                "weight": f.weight,
                "features": f.features,
                "score": s.verdict.score,
                "action": s.action.value,
                "stage": stage,
                "assessment_id": str(s.id),
            },
        }
        for f in s.verdict.fired
    ]
    fresh = await repo.insert_assessment(
        conn,
        {
            "id": s.id,
            "stage": stage,
            "user_id": user_id,
            "payment_id": payment_id,
            "ip": a.ip,
            "device_id": a.device_id,
            "instrument": instrument,
            "amount_paise": a.amount_paise,
            "score": s.verdict.score,
            "action": s.action.value,
            "rules": s.verdict.rules,
            "listed": s.listed,
        },
        events,
    )
    if not fresh:
        return False  # scored at this stage before (a redelivered message)
    for e in events:
        recorded(conn, e["kind"], e["severity"], payment_id)
    log.info(
        "fraud.scored",
        stage=stage,
        score=s.verdict.score,
        action=s.action.value,
        rules=",".join(s.verdict.rules),
        payment_id=str(payment_id),
    )
    return True


async def record_order(conn: AsyncConnection, s: Screening, payment_id: uuid.UUID) -> None:
    """In the payment row's transaction: the screening, and its review if it asked for one
    (the order opens; the credits will be held when the payment is credited)."""
    a = s.attempt
    await _record(conn, s, user_id=a.user_id, payment_id=payment_id)
    if s.action is Action.review:
        await repo.insert_review(
            conn,
            {
                "id": uuid.uuid4(),
                "payment_id": payment_id,
                "user_id": a.user_id,
                "wallet_id": a.wallet_id,
                "stage": "order",
                "score": s.verdict.score,
                "rules": s.verdict.rules,
            },
        )


async def record_blocked(conn: AsyncConnection, s: Screening) -> None:
    """After the order's transaction rolled back: the refusal and its reasons. The user row
    is the only other thing written (the events name the member; it may be their first
    visit)."""
    user_id = await users.ensure_user(conn, s.attempt.subject)
    await _record(conn, s, user_id=user_id, payment_id=None)


# --- once paid (the fraud.detection consumer) --------------------------------------------


def instrument_of(method: dict[str, object] | None) -> tuple[str | None, str | None]:
    """The paying instrument from Cashfree's `payment_method`: a key for the velocity
    windows ("vpa:<upi id>" or "card:<masked number>:<network>") and the UPI VPA (for the
    lists), or (None, None) for a method that names no reusable instrument."""
    if not method:
        return None, None
    upi = method.get("upi")
    if isinstance(upi, dict) and isinstance(upi.get("upi_id"), str) and upi["upi_id"]:
        vpa = str(upi["upi_id"]).strip().lower()[:150]
        return f"vpa:{vpa}", vpa
    card = method.get("card")
    if isinstance(card, dict):
        ref = card.get("instrument_id") or card.get("card_number")
        if isinstance(ref, str) and ref:
            return f"card:{ref[:100]}:{str(card.get('card_network') or '')[:20]}", None
    return None, None


async def screen_paid(
    conn: AsyncConnection,
    store: RedisStore | None,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    wallet_id: uuid.UUID,
    payment_id: uuid.UUID,
    amount_paise: int,
    instrument: str | None,
    vpa: str | None,
) -> Screening:
    """Score a paid purchase again with what only Cashfree knows: the VPA or card it was
    paid with (velocity per instrument, accounts per instrument) and the mismatches
    recorded since the order opened."""
    t = Thresholds.of(settings)
    attempt = OrderAttempt(
        subject="",
        user_id=user_id,
        wallet_id=wallet_id,
        attempt_key=f"paid:{payment_id}",
        amount_paise=amount_paise,
        buys_pack=False,
        ip=None,
        device_id=None,
    )
    sid = uuid.uuid4()
    entries = [("user", str(user_id))] + ([("vpa", vpa)] if vpa else [])
    on = await repo.listed(conn, entries)
    if "deny" in on.values():
        fired = (
            Fired("deny_list", 100, {"listed": sorted(k for k, v in on.items() if v == "deny")}),
        )
        # Paid already: a block is too late, so the credits go under review.
        return Screening(sid, attempt, Verdict(100, Action.block, fired), "deny", Features())
    if "allow" in on.values():
        return Screening(sid, attempt, Verdict(0, Action.allow), "allow", Features())
    now = datetime.now(UTC)
    counts = (
        await velocity.count(
            conn,
            store,
            [velocity.Touch("instrument", instrument, attempt.attempt_key)],
            user_id=str(user_id),
            window_s=settings.fraud_window_s,
        )
        if instrument
        else velocity.Counts({}, {}, "none")
    )
    features = Features(
        instrument_attempts=counts.attempts.get("instrument"),
        instrument_accounts=counts.accounts.get("instrument"),
        mismatches=await repo.count_events(conn, user_id, MISMATCH_KINDS, now - MISMATCH_WINDOW),
    )
    return Screening(sid, attempt, score(features, t), None, features)


async def record_paid(
    conn: AsyncConnection, s: Screening, payment_id: uuid.UUID, instrument: str | None
) -> bool:
    """The paid-stage screening (once per payment: False when it was recorded before)."""
    return await _record(
        conn,
        s,
        user_id=s.attempt.user_id,
        payment_id=payment_id,
        stage="paid",
        instrument=instrument,
    )
