"""The public event vocabulary: what CommDesk services receive (webhooks out) and pull
(`GET /v1/events`), made from the events the money modules announce through the outbox.

Each internal event becomes zero, one or two public events; each public event has a stable
type (`PUBLIC_TYPES`) and a documented payload of public fields only: ids a client can look
up through the API, amounts in paise or credits (integers), statuses and codes. Never an
internal reason text (a gateway's message), an address or a secret. The member is named by
CommDesk's own user id (`user`, the JWT `sub`), never billing's row id.

A public event's id is derived from the message it came from (`uuid5(message id, type)`):
the same message consumed twice makes the same event, recorded once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commdesk_billing.queues.envelope import Envelope

# Public type → what it means (docs/api.md "Webhooks out" lists the payloads).
PUBLIC_TYPES: dict[str, str] = {
    "payment.paid": "Cashfree confirmed a payment (its credits follow: payment.credited)",
    "payment.credited": "a payment's credits (or a sponsorship's funds) were granted",
    "payment.failed": "a payment ended unpaid: failed, dropped, expired or cancelled",
    "refund.created": "a refund was requested (its credits are held until it ends)",
    "refund.succeeded": "a refund was paid out",
    "refund.failed": "a refund was refused or cancelled; its credits are back",
    "wallet.low_balance": "a wallet's available credits crossed its auto-recharge level",
    "auto_recharge.requested": "an auto-recharge was started for a low wallet",
    "auto_recharge.succeeded": "an auto-recharge's payment was credited",
    "auto_recharge.failed": "an auto-recharge ended without credits",
    "auto_recharge.disabled": "auto-recharge was turned off after repeated failures",
    "spend.created": "a member spent credits in a community",
    "settlement.paid": "a payee's settlement was paid out",
    "settlement.failed": "a payee's settlement transfer failed",
    "settlement.reversed": "a paid settlement came back (reversed by the bank)",
}

# The internal events consumed on `webhooks.outbound` (routed in the wiring).
INTERNAL_TYPES = (
    "payment.status_changed",
    "payment.credited",
    "refund.created",
    "refund.succeeded",
    "refund.failed",
    "wallet.low_balance",
    "auto_recharge.succeeded",
    "auto_recharge.failed",
    "auto_recharge.disabled",
    "community.spent",
    "settlement.paid",
    "settlement.failed",
    "settlement.reversed",
)

# Payments' statuses that end a payment unpaid (`payment.failed`, with the status).
_UNPAID = frozenset({"FAILED", "USER_DROPPED", "EXPIRED", "CANCELLED"})

# Billing's user row id → CommDesk's user id (None: no such user).
UserOf = Callable[[uuid.UUID], Awaitable[str | None]]
# A payment's public figures by id (None: no such payment).
PaymentOf = Callable[[uuid.UUID], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class PublicEvent:
    id: uuid.UUID
    type: str
    data: dict[str, Any]
    occurred_at: datetime


class Unreadable(ValueError):
    """An internal event whose payload lacks what its public event needs."""


def _take(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named fields, as they are (each must be there: a producer's contract)."""
    missing = [n for n in names if n not in payload]
    if missing:
        raise Unreadable(f"missing {', '.join(missing)}")
    return {n: payload[n] for n in names}


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise Unreadable("an id is not a UUID") from exc


async def translate(
    envelope: Envelope, user_of: UserOf, payment_of: PaymentOf
) -> list[PublicEvent]:
    """The public events one internal event makes (none: nothing a client is told)."""
    p = envelope.payload
    out: list[tuple[str, dict[str, Any]]] = []

    async def user(key: str = "user_id") -> str | None:
        return await user_of(_uuid(p[key])) if p.get(key) else None

    match envelope.type:
        case "payment.status_changed":
            status = str(p.get("status", ""))
            if status == "PAID" or status in _UNPAID:
                payment = await payment_of(_uuid(p.get("payment_id")))
                if payment is not None:
                    if status == "PAID":
                        out.append(("payment.paid", payment))
                    else:
                        out.append(("payment.failed", {**payment, "status": status}))
        case "payment.credited":
            data = _take(
                p,
                "payment_id",
                "order_id",
                "wallet_id",
                "amount_paise",
                "taxable_paise",
                "gst_amount_paise",
                "credits",
                "pack_code",
                "kind",
            )
            out.append(("payment.credited", {**data, "user": await user()}))
        case "refund.created" | "refund.succeeded":
            data = _take(p, "refund_id", "payment_id", "amount_paise", "credits")
            out.append((envelope.type, {**data, "user": await user()}))
        case "refund.failed":
            data = _take(p, "refund_id", "payment_id", "amount_paise", "status")
            out.append(("refund.failed", {**data, "user": await user()}))
        case "wallet.low_balance":
            data = _take(p, "wallet_id", "available_credits", "threshold", "trigger_level")
            who = await user()
            out.append(("wallet.low_balance", {**data, "user": who}))
            # The crossing that announced it also started a recharge, whose id is the
            # event's correlation id (autorecharge/trigger.py): the same instant, told apart.
            if envelope.correlation_id:
                out.append(
                    (
                        "auto_recharge.requested",
                        {
                            "recharge_id": str(_uuid(envelope.correlation_id)),
                            "wallet_id": data["wallet_id"],
                            "user": who,
                            "available_credits": data["available_credits"],
                            "trigger_level": data["trigger_level"],
                        },
                    )
                )
        case "auto_recharge.succeeded":
            data = _take(p, "recharge_id", "wallet_id", "payment_id", "amount_paise", "credits")
            out.append(("auto_recharge.succeeded", {**data, "user": await user()}))
        case "auto_recharge.failed":
            data = _take(p, "recharge_id", "wallet_id", "payment_id", "retry_at")
            data["consecutive_failures"] = p.get("consecutive_failures")
            out.append(("auto_recharge.failed", {**data, "user": await user()}))
        case "auto_recharge.disabled":
            data = _take(p, "recharge_id", "wallet_id", "consecutive_failures")
            out.append(("auto_recharge.disabled", {**data, "user": await user()}))
        case "community.spent":
            data = _take(
                p,
                "spend_id",
                "community_id",
                "wallet_id",
                "credits",
                "fee_credits",
                "community_credits",
                "reference",
            )
            out.append(("spend.created", {**data, "user": p.get("user_external_id")}))
        case "settlement.paid":
            data = _take(p, "settlement_id", "payee_id", "gross_paise", "net_paise", "utr")
            out.append(("settlement.paid", data))
        case "settlement.failed" | "settlement.reversed":
            data = _take(p, "settlement_id", "payee_id", "gross_paise", "net_paise")
            out.append((envelope.type, {**data, "failure_code": p.get("code")}))
        case _:
            return []
    return [
        PublicEvent(
            id=uuid.uuid5(envelope.id, public_type),
            type=public_type,
            data=data,
            occurred_at=envelope.occurred_at,
        )
        for public_type, data in out
    ]
