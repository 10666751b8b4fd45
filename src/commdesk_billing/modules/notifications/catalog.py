"""Which events become which notification: the one table of them (`CATALOG`).

For each event type: the payload it must carry (extra fields are ignored, missing optional
ones are rendered as a sentence that says so, never as a blank), who it is for (a billing
user, or a payee, which billing knows no address of), the template, the values the
template is filled with, and the event's own identity, from which the notification's key
is made: an event delivered or announced twice has one key, so it is sent once.

`wiring.ROUTES` routes exactly these types to `notifications.billing`
(`tests/modules/notifications/test_catalog.py` holds both to that).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt

from commdesk_billing.modules.notifications.render import credits, inr, plain, when
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.security.text import StrictInput

Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
Paise = Annotated[StrictInt, Field(ge=0, le=10**13)]
Credits = Annotated[StrictInt, Field(ge=-(10**13), le=10**13)]
Text = Annotated[str, Field(max_length=2000)]


def _iso(value: str) -> str:
    if len(value) == 10:
        date.fromisoformat(value)
    else:
        datetime.fromisoformat(value)
    return value


IsoWhen = Annotated[str, Field(max_length=40), AfterValidator(_iso)]
Url = Annotated[str, Field(pattern=r"^https?://[^\s]{1,2000}$")]


class Payload(StrictInput, extra="ignore"):
    pass


class UserPayload(Payload):
    user_id: uuid.UUID


class PaymentCredited(UserPayload):
    payment_id: Ident
    order_id: Ident | None = None
    amount_paise: Paise
    gst_amount_paise: Paise | None = None
    credits: Credits | None = None
    pack_code: Text | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")] | None = None


class RefundSucceeded(UserPayload):
    refund_id: Ident
    payment_id: Ident | None = None
    amount_paise: Paise
    credits: Credits | None = None


class SettlementEvent(Payload):
    settlement_id: Ident
    payee_id: uuid.UUID
    gross_paise: Paise | None = None
    net_paise: Paise
    utr: Text | None = None
    code: Text | None = None
    reason: Text | None = None


class LowBalance(UserPayload):
    wallet_id: Ident
    available_credits: Credits
    threshold: Credits | None = None
    # Set when auto-recharge announced it, asking for a recharge at this level.
    trigger_level: Credits | None = None


class RechargeCheckout(UserPayload):
    recharge_id: Ident
    wallet_id: Ident
    payment_id: Ident | None = None
    # None where Cashfree's own checkout is used (opened by its JS SDK, no page address):
    # the member pays from their wallet's pending payment.
    checkout_url: Url | None = None
    amount_paise: Paise
    credits: Credits | None = None


class RechargeNotified(UserPayload):
    recharge_id: Ident
    wallet_id: Ident
    amount_paise: Paise
    credits: Credits | None = None
    debit_on: IsoWhen | None = None


class RechargeSucceeded(UserPayload):
    recharge_id: Ident
    wallet_id: Ident
    amount_paise: Paise
    credits: Credits | None = None


class RechargeFailed(UserPayload):
    recharge_id: Ident
    wallet_id: Ident
    amount_paise: Paise | None = None
    reason: Text | None = None
    retry_at: IsoWhen | None = None


class RechargeDisabled(UserPayload):
    wallet_id: Ident
    reason: Text | None = None
    consecutive_failures: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None


class MandateChanged(UserPayload):
    mandate_id: Ident
    status: Annotated[str, Field(pattern=r"^[A-Za-z_]{1,40}$")]
    max_amount_paise: Paise | None = None


class SubscriptionRenewed(UserPayload):
    subscription_id: Ident
    plan_name: Text | None = None
    period_start: IsoWhen | None = None
    period_end: IsoWhen | None = None
    price_credits: Credits | None = None
    price_paise: Paise | None = None


class RenewalFailed(UserPayload):
    subscription_id: Ident
    plan_name: Text | None = None
    attempt: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    next_retry_at: IsoWhen | None = None
    grace_until: IsoWhen | None = None


class SubscriptionCancelled(UserPayload):
    subscription_id: Ident
    plan_name: Text | None = None
    ends_at: IsoWhen | None = None


# --- The values each template is filled with ------------------------------------------


def _plan(name: str | None) -> str:
    """Follows "your plan": ' "Community Pro"', or nothing when the event names none."""
    return f' "{plain(name, 100)}"' if name else ""


def _receipt(p: PaymentCredited) -> dict[str, str]:
    gst = "" if p.gst_amount_paise is None else f" (GST {inr(p.gst_amount_paise)} included)"
    # A pack or a custom amount buys credits; any other kind (a sponsorship) is named.
    other_kind = p.kind is not None and p.kind not in ("credits", "pack", "custom")
    if p.credits:
        added = f"{credits(p.credits)} were added to your wallet."
    elif other_kind:
        added = "No credits come with this payment."
    else:
        added = "Your wallet shows the credits it added."
    if p.pack_code:
        what = f"the credit pack {plain(p.pack_code, 60)}"
    else:
        what = f"a {p.kind}" if other_kind and p.kind else "a credit top-up"
    return {
        "amount": inr(p.amount_paise),
        "gst_note": gst,
        "credits_line": added,
        "order": p.order_id or p.payment_id,
        "pack": what.replace("_", " ") if not p.pack_code else what,
    }


def _refund(p: RefundSucceeded) -> dict[str, str]:
    taken = (
        "No credits were taken back."
        if not p.credits
        else f"{credits(p.credits)} were taken back from your wallet."
    )
    return {
        "amount": inr(p.amount_paise),
        "credits_line": taken,
        "refund": p.refund_id,
        "payment": p.payment_id or "your purchase",
    }


def _settlement(p: SettlementEvent) -> dict[str, str]:
    return {
        "settlement": p.settlement_id,
        "net": inr(p.net_paise),
        "gross": "not stated" if p.gross_paise is None else inr(p.gross_paise),
        "utr": plain(p.utr, 60) if p.utr else "not given",
        "reason": plain(p.reason, 300) if p.reason else "no reason was given",
    }


def _low_balance(p: LowBalance) -> dict[str, str]:
    below = "" if p.threshold is None else f", below your threshold of {credits(p.threshold)}"
    advice = (
        "An automatic recharge has been asked for; we will tell you how it goes."
        if p.trigger_level is not None
        else "Top up now, or turn on automatic recharge, so your community's work does not stop."
    )
    return {"available": credits(p.available_credits), "threshold_note": below, "advice": advice}


def _recharge(p: RechargeCheckout | RechargeNotified | RechargeSucceeded) -> dict[str, str]:
    out = {
        "amount": inr(p.amount_paise),
        "for_credits": "" if p.credits is None else f" for {credits(p.credits)}",
        "credits_line": "The credits were added to your wallet."
        if p.credits is None
        else f"{credits(p.credits)} were added to your wallet.",
    }
    if isinstance(p, RechargeCheckout):
        out["pay_line"] = (
            f"Pay here: {p.checkout_url}"
            if p.checkout_url
            else "Pay it from your wallet's pending payment in CommDesk."
        )
    if isinstance(p, RechargeNotified):
        out["debit_on"] = (
            f"on or after {when(p.debit_on)}" if p.debit_on else "after the notice period"
        )
    return out


def _recharge_failed(p: RechargeFailed) -> dict[str, str]:
    return {
        "amount": "Your automatic recharge"
        if p.amount_paise is None
        else f"Your automatic recharge of {inr(p.amount_paise)}",
        "reason": plain(p.reason, 300) if p.reason else "no reason was given",
        "retry_line": f"We will try again at {when(p.retry_at)}."
        if p.retry_at
        else "It will not be retried automatically.",
    }


def _disabled(p: RechargeDisabled) -> dict[str, str]:
    if p.reason:
        reason = plain(p.reason, 300)
    elif p.consecutive_failures is not None:
        n = p.consecutive_failures
        reason = f"{n} recharge{'s' if n != 1 else ''} failed in a row"
    else:
        reason = "no reason was given"
    return {"reason": reason}


def _mandate(p: MandateChanged) -> dict[str, str]:
    limit = (
        ""
        if p.max_amount_paise is None
        else f" It allows debits of up to {inr(p.max_amount_paise)} each."
    )
    return {"status": p.status.lower(), "mandate": p.mandate_id, "limit_note": limit}


def _renewed(p: SubscriptionRenewed) -> dict[str, str]:
    if p.price_credits is not None:
        price = f"{credits(p.price_credits)} were charged to your wallet."
    elif p.price_paise is not None:
        price = f"{inr(p.price_paise)} was charged."
    else:
        price = "It was charged as your plan says."
    period = (
        f"from {when(p.period_start)} to {when(p.period_end)}"
        if p.period_start and p.period_end
        else "for the next period"
    )
    return {"plan_q": _plan(p.plan_name), "period": period, "price_line": price}


def _renewal_failed(p: RenewalFailed) -> dict[str, str]:
    return {
        "plan_q": _plan(p.plan_name),
        "attempt": "" if p.attempt is None else f" (attempt {p.attempt})",
        "retry_line": f"We will try again at {when(p.next_retry_at)}."
        if p.next_retry_at
        else "It will not be retried automatically.",
        "grace_line": f"Your plan stays active until {when(p.grace_until)}."
        if p.grace_until
        else "Please update your payment method to keep your plan.",
    }


def _cancelled(p: SubscriptionCancelled) -> dict[str, str]:
    ends = f"It stays active until {when(p.ends_at)}." if p.ends_at else "It has ended."
    return {"plan_q": _plan(p.plan_name), "ends_line": ends}


# --- The table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    template: str
    payload: type[Payload]
    # "user": the billing user `user_id` (email and webhook); "payee": a payee, whose
    # people CommDesk's notification service knows (webhook only).
    audience: Literal["user", "payee"]
    view: Callable[[Any], dict[str, str]]
    # The event's own identity (what makes two deliveries of it the same notification).
    identity: Callable[[Any, Envelope], str]


def _by(field: str) -> Callable[[Any, Envelope], str]:
    return lambda p, _e: str(getattr(p, field))


def _each_message(field: str) -> Callable[[Any, Envelope], str]:
    # Events that may recur with the same payload (a balance low again next week): each
    # announcement is its own notification; a redelivery of one message is not.
    return lambda p, e: f"{getattr(p, field)}:{e.id}"


CATALOG: dict[str, Spec] = {
    "payment.credited": Spec(
        "payment_receipt", PaymentCredited, "user", _receipt, _by("payment_id")
    ),
    "refund.succeeded": Spec(
        "refund_succeeded", RefundSucceeded, "user", _refund, _by("refund_id")
    ),
    "settlement.paid": Spec(
        "settlement_paid", SettlementEvent, "payee", _settlement, _by("settlement_id")
    ),
    "settlement.failed": Spec(
        "settlement_failed", SettlementEvent, "payee", _settlement, _by("settlement_id")
    ),
    "settlement.reversed": Spec(
        "settlement_reversed", SettlementEvent, "payee", _settlement, _by("settlement_id")
    ),
    "wallet.low_balance": Spec(
        "low_balance", LowBalance, "user", _low_balance, _each_message("wallet_id")
    ),
    "auto_recharge.checkout_opened": Spec(
        "recharge_checkout", RechargeCheckout, "user", _recharge, _by("recharge_id")
    ),
    "auto_recharge.notified": Spec(
        "recharge_notified", RechargeNotified, "user", _recharge, _by("recharge_id")
    ),
    "auto_recharge.succeeded": Spec(
        "recharge_succeeded", RechargeSucceeded, "user", _recharge, _by("recharge_id")
    ),
    "auto_recharge.failed": Spec(
        "recharge_failed",
        RechargeFailed,
        "user",
        _recharge_failed,
        lambda p, _e: f"{p.recharge_id}:{p.retry_at or 'final'}",
    ),
    "auto_recharge.disabled": Spec(
        "recharge_disabled", RechargeDisabled, "user", _disabled, _each_message("wallet_id")
    ),
    # A mandate may return to a status (ACTIVE, ON_HOLD, ACTIVE again): each change the
    # mandates module announces (once, in the transaction that made it) is told.
    "mandate.status_changed": Spec(
        "mandate_status",
        MandateChanged,
        "user",
        _mandate,
        lambda p, e: f"{p.mandate_id}:{p.status}:{e.id}",
    ),
    "subscription.renewed": Spec(
        "subscription_renewed",
        SubscriptionRenewed,
        "user",
        _renewed,
        lambda p, e: f"{p.subscription_id}:{p.period_start or e.id}",
    ),
    "subscription.renewal_failed": Spec(
        "subscription_renewal_failed",
        RenewalFailed,
        "user",
        _renewal_failed,
        lambda p, e: (
            f"{p.subscription_id}:{p.grace_until}:{p.attempt}"
            if p.grace_until is not None and p.attempt is not None
            else f"{p.subscription_id}:{e.id}"
        ),
    ),
    # A member may cancel at the period's end and then cancel now: two notices, told apart
    # by when the plan ends (the same cancellation announced again has the same `ends_at`).
    "subscription.cancelled": Spec(
        "subscription_cancelled",
        SubscriptionCancelled,
        "user",
        _cancelled,
        # A cancellation at period end may be followed by one now: a different end, its own
        # notification.
        lambda p, e: f"{p.subscription_id}:{p.ends_at or e.id}",
    ),
}
