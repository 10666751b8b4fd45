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
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Config, Engine
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.payout_models import TransferWebhook, mask
from commdesk_billing.gateway.payout_webhooks import Refused, read_transfer_webhook
from commdesk_billing.gateway.payouts import redact
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.problems import problem
from commdesk_billing.queues import outbox
from commdesk_billing.security import addresses

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


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
    summary="Cashfree Payouts transfer webhooks (signed with the Payouts client secret)",
    responses={
        200: {"description": "Stored: accepted, duplicate, unknown_transfer or rejected"},
        400: {"description": "JSON nested too deeply (refused before the signature check)"},
        401: {"description": "Missing, invalid or stale signature; nothing stored"},
        403: {"description": "Source address not on the allow-list"},
        503: {"description": "Payouts not configured here, or the database is unavailable"},
    },
)
async def payouts_webhook(request: Request, engine: Engine, settings: Config) -> JSONResponse:
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
