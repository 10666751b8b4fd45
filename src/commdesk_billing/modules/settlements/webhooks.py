"""POST /v1/webhooks/cashfree-payouts: Cashfree Payouts' transfer webhooks. Unauthenticated
by bearer token; the signature with the **Payouts** app's secret is the authentication
(`gateway/payout_webhooks.py`). Answers fast: the check, one insert, one outbox row. The
body is kept with the beneficiary's account number and VPA masked (`masked`), beside the
SHA-256 of the bytes received.

As for PG's receiver (`modules/webhooks/api.py`): a delivery not signed by us (or stale) is
refused 401 and not stored; anything signed is stored raw, once per delivery identity (type,
transfer, status and code; a repeat only counts itself), and answered 200, also when its
body cannot be read (kept as `rejected`) or its transfer is not ours (`unknown_transfer`).
A new delivery about one of our transfers sends `settlement.webhook`: the consumer asks
Cashfree's API about the transfer and applies that answer, never the webhook's word.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Config, Engine
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.payout_models import TransferWebhook, mask
from commdesk_billing.gateway.payout_webhooks import Refused, read_transfer_webhook
from commdesk_billing.gateway.payouts import redact
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.problems import errors, problem
from commdesk_billing.queues import outbox
from commdesk_billing.security import addresses

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class PayoutWebhookReceipt(BaseModel):
    """What became of a signed Payouts delivery."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "accepted"}]})

    status: Literal["accepted", "duplicate", "unknown_transfer", "rejected"] = Field(
        description="accepted: the transfer will be asked of Cashfree's Payouts API; "
        "duplicate: a repeat of a stored delivery; unknown_transfer: no transfer of ours; "
        "rejected: signed but unreadable (kept, masked, as evidence)"
    )


# The signature headers Cashfree Payouts sends (read from the raw request, so listed here).
_SIGNED: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-webhook-signature",
            "in": "header",
            "required": True,
            "description": "base64 HMAC-SHA256, with the Payouts client secret (not PG's), "
            "of the timestamp followed by the raw body",
            "schema": {"type": "string", "maxLength": 200},
        },
        {
            "name": "x-webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "Milliseconds since the epoch, within BILLING_WEBHOOK_MAX_AGE_S "
            "in the past and BILLING_WEBHOOK_MAX_FUTURE_S ahead",
            "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"},
        },
    ]
}


def _refuse(status: int, code: str, detail: str) -> JSONResponse:
    return problem(status, code, "Webhook refused", detail)


def _secrets(settings: Settings) -> list[str]:
    if settings.cashfree_payout_client_secret is None:
        return []
    return [settings.cashfree_payout_client_secret.get_secret_value()] + [
        s.get_secret_value() for s in settings.cashfree_payout_previous_secrets
    ]


_SECRET_FIELDS = frozenset({"bank_account_number", "vpa"})


def _hidden(value: Any) -> Any:
    """A secret field's value masked whatever its JSON type: Cashfree may send an account
    number as a number (our model reads one: `TextId`), or wrap it."""
    if isinstance(value, dict):
        return {k: _hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return mask(value if isinstance(value, str) else str(value))


def _mask_fields(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _hidden(v) if k in _SECRET_FIELDS else _mask_fields(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_fields(v) for v in node]
    return node


def masked(body: bytes) -> bytes:
    """The body to keep: Cashfree echoes the beneficiary's account number and VPA, which are
    never stored whole (payees keep them sealed), so they are masked; a body that is not
    JSON has every long run of digits masked instead."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return redact(body.decode("utf-8", "replace")).encode()
    return json.dumps(_mask_fields(doc), separators=(",", ":")).encode()


@router.post(
    "/cashfree-payouts",
    response_model=PayoutWebhookReceipt,
    openapi_extra=_SIGNED,
    summary="Cashfree Payouts transfer webhooks (Cashfree Payouts only: signed with the "
    "Payouts client secret, no token)",
    responses={
        200: {"description": "Stored, or a repeat counted: what became of the delivery (`status`)"},
        **errors(
            {
                400: "JSON nested more than 32 deep (`json_too_deep`), refused before the "
                "signature check",
                401: "Signature headers missing (`webhook_unsigned`), a malformed timestamp "
                "(`webhook_timestamp_invalid`), a signature no configured Payouts secret makes "
                "(`webhook_signature_invalid`), or a timestamp outside the window "
                "(`webhook_stale`); nothing stored",
                403: "Source address not on BILLING_WEBHOOK_ALLOWED_IPS "
                "(`webhook_source_refused`); nothing stored",
                415: "A body sent as something other than JSON (`unsupported_media_type`)",
                503: "No Payouts secret is configured here (`payouts_not_configured`); "
                "nothing stored",
            }
        ),
    },
)
async def payouts_webhook(request: Request, engine: Engine, settings: Config) -> JSONResponse:
    """Cashfree Payouts' deliveries about a settlement's transfer (success, failure,
    reversal). A signed delivery is stored once per identity, with the beneficiary's account
    number and VPA masked, and answered 200 with what became of it. Nothing in it is
    believed: a new delivery about one of our transfers makes the worker ask the Payouts
    API about that transfer and apply its answer."""
    ip = addresses.client_ip(request.scope)
    if not addresses.ip_allowed(settings, ip):
        return _refuse(403, "webhook_source_refused", "source address not allowed")
    secrets = _secrets(settings)
    if not secrets:
        return _refuse(503, "payouts_not_configured", "no Payouts secret is configured")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    hook: TransferWebhook | None = None
    unreadable: str | None = None
    try:
        hook = read_transfer_webhook(
            body,
            headers,
            secrets,
            max_age_s=settings.webhook_max_age_s,
            max_future_s=settings.webhook_max_future_s,
        )
    except Refused as exc:
        if exc.code != "webhook_unreadable":
            return _refuse(401, exc.code, exc.detail)
        # Pydantic quotes the input it refused: an account number or VPA among it is
        # hidden before the reason is logged or kept.
        unreadable = redact(exc.detail)[:300]
    outcome = await in_transaction(
        engine, lambda conn: _receive(conn, body, headers, hook, unreadable)
    )
    return JSONResponse({"status": outcome}, status_code=200)


async def _receive(
    conn: AsyncConnection,
    body: bytes,
    headers: dict[str, str],
    hook: TransferWebhook | None,
    unreadable: str | None,
) -> str:
    common: dict[str, Any] = {
        "raw": masked(body),
        "sha": hashlib.sha256(body).hexdigest(),
        "headers": signature.evidence(headers),
        "ts": headers.get("x-webhook-timestamp", "")[:50],
    }
    if hook is None:
        stored = {
            **common,
            "key": "unreadable:" + hashlib.sha256(body).hexdigest(),
            "type": "(unreadable)",
            "transfer_id": None,
            "cf": None,
            "status": None,
            "code": None,
            "settlement_id": None,
            "outcome": f"rejected: {unreadable}",
        }
        _id, inserted = await repo.store_webhook(conn, stored)
        log.warning("payout_webhook.unreadable", reason=unreadable)
        return "rejected" if inserted else "duplicate"
    t = hook.data
    identity = json.dumps([hook.type, t.transfer_id, t.cf_transfer_id, t.status, t.status_code])
    attempt = await repo.attempt_by_transfer(conn, t.transfer_id)
    stored = {
        **common,
        "key": hashlib.sha256(identity.encode()).hexdigest(),
        "type": hook.type[:100],
        "transfer_id": t.transfer_id[:100],
        "cf": (t.cf_transfer_id or "")[:100] or None,
        "status": t.status[:50],
        "code": (t.status_code or "")[:100] or None,
        "settlement_id": attempt.settlement_id if attempt else None,
        "outcome": "accepted" if attempt else "unknown_transfer",
    }
    webhook_id, inserted = await repo.store_webhook(conn, stored)
    if not inserted:
        return "duplicate"
    if attempt is None:
        log.warning("payout_webhook.unknown_transfer", transfer_id=t.transfer_id[:100])
        return "unknown_transfer"
    await outbox.send(
        conn,
        "settlements.processing",
        "settlement.webhook",
        {
            "settlement_id": str(attempt.settlement_id),
            "source": "webhook",
            "webhook_id": str(webhook_id),
        },
        correlation_id=str(attempt.settlement_id),
    )
    return "accepted"
