"""Vendor settlement webhooks (cashfree.md §14.5): Cashfree telling us it paid (or failed
to pay, or took back) what it held for a vendor.

A settlement is per vendor, never per order: one settlement pays all of a vendor's unsettled
balance, net of refunds taken back from it. So it is matched to the community by its
`vendor_id` (ours, derived from the community's id: `split_vendors`), and moves that
community's part of `inr:vendor_settlements_due` as a whole; which sponsorships it covered
is Cashfree's vendor recon, not our books. Cashfree offers no settlement look-up we call, so
the signed payload is acted on: the signature (the PG client secret) is the authentication,
and `ledger verify` holds the due amount to Σ parts - Σ refunded parts - Σ settled.

Per settlement (its row locked, keyed by Cashfree's settlement id):

    CREATED  --SUCCESS-->  SUCCESS   split.vendor_settled: Dr due, Cr gateway clearing
    CREATED  --FAILED--->  FAILED    nothing moves: still due (an alert)
    FAILED   --SUCCESS-->  SUCCESS   as from CREATED: Cashfree paid after all
    SUCCESS  --REVERSED->  REVERSED  split.vendor_settlement_reversed: due again (an alert)
    CREATED  --REVERSED->  REVERSED  nothing moved, nothing moves back (an alert)
    FAILED   --REVERSED->  REVERSED  the same

So the same events end in the same books in whatever order they arrive. Anything else (a
repeat, a SUCCESS after REVERSED, a FAILED after SUCCESS or REVERSED, an event
naming a settlement we hold for another vendor) changes nothing and is recorded on the
webhook's row. Each delivery is stored raw once per signed identity (type, settlement,
status); a repeat bumps its counter and applies nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.signature import Refused
from commdesk_billing.gateway.split_models import VendorSettlementEvent, VendorSettlementWebhook
from commdesk_billing.gateway.split_webhooks import read_vendor_settlement_webhook
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.splits import repository as repo
from commdesk_billing.modules.splits.model import SettlementStatus
from commdesk_billing.security.text import unstorable_text

log = structlog.get_logger(__name__)

# Refusals that come after the signature was found good: the body is Cashfree's (or a
# holder of our secret's) but not one we can act on. Stored and answered 200, or Cashfree
# retries bytes that can never be read.
_SIGNED_BUT_UNREADABLE = frozenset({"webhook_unreadable", "webhook_unexpected"})
# A settlement whose money has not moved (yet): a SUCCESS or a REVERSED may still come.
_NOT_SETTLED = frozenset({SettlementStatus.created, SettlementStatus.failed})
_MAX_ID = 64  # vendor_settlements.settlement_id
# Far above any settlement (₹10 lakh crore) and far below a bigint's limit.
_MAX_PAISE = 10**15


class WebhookRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Receipt:
    webhook_id: uuid.UUID | None
    outcome: str  # applied | duplicate | unknown_vendor | ignored | rejected


def _secrets(settings: Settings) -> list[str]:
    return [settings.cashfree_client_secret.get_secret_value()] + [
        s.get_secret_value() for s in settings.cashfree_previous_secrets
    ]


async def receive(
    engine: AsyncEngine, settings: Settings, body: bytes, headers: Mapping[str, str]
) -> Receipt:
    """Verify, store once, apply. Raises WebhookRefused (401: nothing stored) when the
    signature or its timestamp is not good."""
    try:
        hook = read_vendor_settlement_webhook(
            body,
            headers,
            _secrets(settings),
            max_age_s=settings.webhook_max_age_s,
            max_future_s=settings.webhook_max_future_s,
        )
    except Refused as exc:
        if exc.code not in _SIGNED_BUT_UNREADABLE:
            raise WebhookRefused(exc.code, exc.detail) from exc
        return await _store_rejected(engine, body, headers, f"{exc.code}: {exc.detail}")
    s = hook.settlement
    if unstorable_text({"id": s.settlement_id, "vendor": s.vendor_id, "utr": s.utr}):
        return await _store_rejected(engine, body, headers, "unstorable text in its ids")
    # Signed, but no settlement row could hold it (the table's id is 1-64 characters, its
    # amount a bigint): kept as rejected, or the insert would fail on every retry (a 500).
    if not 1 <= len(s.settlement_id) <= _MAX_ID:
        return await _store_rejected(engine, body, headers, "settlement_id not 1-64 characters")
    if abs(s.settlement_amount_paise) > _MAX_PAISE:
        return await _store_rejected(engine, body, headers, "settlement_amount out of range")
    values = {
        "id": uuid.uuid4(),
        "key": f"{hook.event}:{s.settlement_id}:{s.status}"[:500],
        "type": hook.type[:100],
        "sid": s.settlement_id[:64],
        "vid": s.vendor_id[:64],
        "raw": body,
        "headers": signature.evidence(headers),
        "outcome": "received",
    }

    async def work(conn: AsyncConnection) -> Receipt:
        webhook_id = await repo.store_delivery(conn, values)
        if webhook_id is None:
            return Receipt(None, "duplicate")
        outcome = await apply(conn, hook)
        await repo.set_outcome(conn, webhook_id, outcome)
        kind = outcome.split(":", 1)[0]
        return Receipt(webhook_id, kind)

    return await in_transaction(engine, work)


async def _store_rejected(
    engine: AsyncEngine, body: bytes, headers: Mapping[str, str], why: str
) -> Receipt:
    log.warning("splits.settlement_webhook.unreadable", reason=why[:200])
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "key": f"unreadable:{hashlib.sha256(body).hexdigest()}",
        "type": "(unreadable)",
        "sid": None,
        "vid": None,
        "raw": body,
        "headers": signature.evidence(headers),
        "outcome": f"rejected: {why}"[:500],
    }
    webhook_id = await in_transaction(engine, lambda conn: repo.store_delivery(conn, values))
    return Receipt(webhook_id, "rejected" if webhook_id else "duplicate")


async def apply(conn: AsyncConnection, hook: VendorSettlementWebhook) -> str:
    """What the event does to its settlement; returns the outcome recorded on the webhook."""
    s = hook.settlement
    vendor = await repo.by_vendor_id(conn, s.vendor_id)
    if vendor is None:
        log.warning("splits.settlement.unknown_vendor", vendor_id=s.vendor_id[:64])
        return "unknown_vendor: no community is this vendor"
    amount = s.settlement_amount_paise
    row, _ = await repo.lock_settlement(
        conn,
        settlement_id=s.settlement_id,
        vendor_id=vendor.vendor_id,
        community_id=vendor.community_id,
        amount_paise=amount,
    )
    if row.vendor_id != vendor.vendor_id:
        # One settlement is one vendor's: an event naming ours for another vendor would
        # clear that vendor's due amount with the first one's settlement.
        log.error(
            "splits.settlement.vendor_mismatch",
            settlement_id=row.settlement_id,
            vendor_id=row.vendor_id,
            event_vendor_id=vendor.vendor_id,
        )
        return f"ignored: settlement of vendor {row.vendor_id}, event names {vendor.vendor_id}"
    utr = (s.utr or "")[:64] or None
    reason = (s.reason or "")[:500] or None
    at = datetime.now(UTC)
    event = hook.event
    where = {
        "settlement_id": row.settlement_id,
        "vendor_id": vendor.vendor_id,
        "community_id": vendor.community_id,
    }
    if event == VendorSettlementEvent.CREATED:
        return f"applied: {row.status.value}"
    if event == VendorSettlementEvent.SUCCESS:
        # After FAILED too: a SUCCESS says Cashfree paid the vendor (a FAILED retried under
        # the same id, or delivered late), so FAILED then SUCCESS ends as SUCCESS then
        # FAILED does; only a REVERSED (seen before or after) takes it back.
        if row.status not in _NOT_SETTLED:
            return f"ignored: SUCCESS of a settlement that is {row.status.value}"
        if amount <= 0:
            log.error("splits.settlement.nonpositive", amount_paise=amount, **where)
            return f"ignored: a SUCCESS of {amount} paise moves nothing"
        journal = postings.vendor_settled(amount=amount, at=at, **where)
        await post_journal(conn, journal)
        await repo.move_settlement(
            conn,
            row.settlement_id,
            to=SettlementStatus.success,
            amount_paise=amount,
            utr=utr,
            reason=None,
            settled_journal_id=journal.id,
        )
        log.info("splits.settlement.success", amount_paise=amount, utr=utr, **where)
        return "applied: SUCCESS"
    if event == VendorSettlementEvent.FAILED:
        if row.status is not SettlementStatus.created:
            return f"ignored: FAILED of a settlement that is {row.status.value}"
        await repo.move_settlement(
            conn,
            row.settlement_id,
            to=SettlementStatus.failed,
            amount_paise=row.amount_paise,
            utr=None,
            reason=reason or "failed",
        )
        # Still due to the vendor: Cashfree settles it again later. Finance looks at why.
        log.error("splits.settlement.failed", reason=reason, amount_paise=amount, **where)
        return "applied: FAILED"
    if event == VendorSettlementEvent.REVERSED:
        if row.status is SettlementStatus.success:
            journal = postings.vendor_settlement_reversed(amount=row.amount_paise, at=at, **where)
            await post_journal(conn, journal)
            await repo.move_settlement(
                conn,
                row.settlement_id,
                to=SettlementStatus.reversed,
                amount_paise=row.amount_paise,
                utr=None,
                reason=reason or "reversed",
                reversed_journal_id=journal.id,
            )
        elif row.status in _NOT_SETTLED:
            # Never seen to succeed: nothing moved, nothing moves back, and a SUCCESS that
            # arrives after this is ignored (its money came back).
            await repo.move_settlement(
                conn,
                row.settlement_id,
                to=SettlementStatus.reversed,
                amount_paise=row.amount_paise,
                utr=None,
                reason=reason or "reversed",
            )
        else:
            return f"ignored: REVERSED of a settlement that is {row.status.value}"
        log.error("splits.settlement.reversed", reason=reason, amount_paise=amount, **where)
        return "applied: REVERSED"
    return f"ignored: {json.dumps(event)[:60]}"
