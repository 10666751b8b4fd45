"""Partners' revenue share: when it is posted and taken back, and the partners' own records.

Two entry points are called from other modules' transactions, one call each, so the
coupling stays that call (payments and refunds know nothing else of partners; this module
imports neither of them):

- `on_purchase_credited`, from `payments.crediting.credit_payment`, after the grant, in the
  transaction that moves the payment to CREDITED: the buyer's attribution *in force at the
  credit time* decides. Credit time, not order or payment time, because crediting is the
  moment the purchase becomes ours to share, it happens exactly once (the conditional
  PAID → CREDITED move), and a payment held for review earns its partner nothing until it
  is credited. A partner inactive by then earns nothing on it.
- `on_refund_succeeded`, from `refunds.processing._settle`, in the refund's transaction:
  the refund's proportion of the share is taken back (`shares.next_reversal`).

Both are repeat-safe: a share per payment and a reversal per refund at most (unique
columns), journals keyed by the payment and the refund.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import PartnerExists, PartnerInactive, PartnerNotFound
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.accounts import open_partner_accounts
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.partners import repository as repo
from commdesk_billing.modules.partners import shares
from commdesk_billing.modules.partners.model import (
    Attribution,
    Partner,
    PartnerStatus,
    Reversal,
    Share,
    Totals,
)

log = structlog.get_logger(__name__)


class CreditedPurchase(Protocol):
    """What a share needs of a purchase (a payment row has these)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def user_id(self) -> uuid.UUID: ...

    @property
    def taxable_paise(self) -> int: ...


async def on_purchase_credited(
    conn: AsyncConnection, purchase: CreditedPurchase, *, at: datetime | None = None
) -> Share | None:
    """Post the partner's share of a purchase being credited now (`at`), if its buyer was
    attributed to an active partner then and the share is at least a paisa."""
    at = at or datetime.now(UTC)
    if purchase.taxable_paise <= 0:
        return None
    # One statement on every credited purchase: most buyers came through no partner.
    attribution = await repo.attribution_of_user_at(conn, purchase.user_id, at)
    if attribution is None:
        return None
    partner = await repo.get_partner(conn, attribution.partner_id)
    if partner is None or partner.status is not PartnerStatus.active:
        log.info("partner.share.skipped", payment_id=str(purchase.id), reason="inactive")
        return None
    share_paise = shares.share_of(purchase.taxable_paise, partner.share_bps)
    if share_paise == 0:
        return None  # a 0 bps partner, or a purchase too small to earn a paisa
    accounts = await open_partner_accounts(conn, partner.id)
    journal = postings.partner_share_posted(
        payment_id=purchase.id,
        partner=accounts,
        share_paise=share_paise,
        share_bps=partner.share_bps,
        at=at,
    )
    await post_journal(conn, journal)
    share = Share(
        id=uuid.uuid4(),
        payment_id=purchase.id,
        partner_id=partner.id,
        attribution_id=attribution.id,
        terms_version=partner.version,
        taxable_paise=purchase.taxable_paise,
        share_bps=partner.share_bps,
        share_paise=share_paise,
        journal_id=journal.id,
        created_at=at,
    )
    if not await repo.insert_share(conn, share):
        return await repo.share_of_payment(conn, purchase.id)
    log.info(
        "partner.share.posted",
        partner_id=partner.id,
        payment_id=str(purchase.id),
        share_paise=share_paise,
    )
    return share


async def on_refund_succeeded(
    conn: AsyncConnection,
    refund_id: uuid.UUID,
    payment_id: uuid.UUID,
    refund_taxable_paise: int,
) -> Reversal | None:
    """Take back the refund's proportion of the purchase's share, if it had one. The
    share's row is locked: two refunds of one purchase settle one after the other, each
    seeing what the other took."""
    share = await repo.share_of_payment(conn, payment_id, lock=True)
    if share is None:
        return None
    if (done := await repo.reversal_of_refund(conn, refund_id)) is not None:
        return done
    before_taxable, before_share = await repo.reversed_so_far(conn, share.id)
    back = shares.next_reversal(
        share.share_paise,
        share.taxable_paise,
        before_taxable_paise=before_taxable,
        before_share_paise=before_share,
        refund_taxable_paise=refund_taxable_paise,
    )
    at = datetime.now(UTC)
    journal_id = None
    if back:
        accounts = await open_partner_accounts(conn, share.partner_id)
        journal = postings.partner_share_reversed(
            refund_id=refund_id, payment_id=payment_id, partner=accounts, share_paise=back, at=at
        )
        await post_journal(conn, journal)
        journal_id = journal.id
    # Recorded even when nothing came back: the next refund's proportion counts this one's
    # taxable value (the cumulative rounding).
    reversal = Reversal(
        id=uuid.uuid4(),
        refund_id=refund_id,
        share_id=share.id,
        refund_taxable_paise=refund_taxable_paise,
        share_paise=back,
        journal_id=journal_id,
        created_at=at,
    )
    await repo.insert_reversal(conn, reversal)
    log.info(
        "partner.share.reversed",
        partner_id=share.partner_id,
        refund_id=str(refund_id),
        share_paise=back,
    )
    return reversal


# --- the partners' own records ---------------------------------------------------------------


async def create_partner(
    conn: AsyncConnection, *, partner_id: str, name: str, share_bps: int, reason: str, by: str
) -> Partner:
    partner = await repo.insert_partner(conn, partner_id, name, share_bps, reason, by)
    if partner is None:
        raise PartnerExists(f"partner {partner_id} exists; change it with PUT")
    return partner


async def change_partner(
    conn: AsyncConnection,
    *,
    partner_id: str,
    name: str,
    share_bps: int,
    status: PartnerStatus,
    reason: str,
    by: str,
) -> Partner:
    """A new version of its terms. Shares already posted keep the rate they used."""
    partner = await repo.change_terms(
        conn, partner_id, name=name, share_bps=share_bps, status=status, reason=reason, by=by
    )
    if partner is None:
        raise PartnerNotFound(f"partner {partner_id} does not exist")
    return partner


async def require_partner(conn: AsyncConnection, partner_id: str) -> Partner:
    partner = await repo.get_partner(conn, partner_id)
    if partner is None:
        raise PartnerNotFound(f"partner {partner_id} does not exist")
    return partner


async def attribute(
    conn: AsyncConnection,
    *,
    partner_id: str,
    user_external_id: str,
    valid_from: datetime,
    valid_until: datetime | None,
    by: str,
) -> Attribution:
    """Attribute a user to an active partner for a window; refused if another attribution
    of the user is in force at any instant of it (the database decides). The partner is
    not locked: a busy partner's attributions do not queue on its row, and one made as it
    is deactivated earns nothing anyway (an inactive partner earns no share)."""
    partner = await require_partner(conn, partner_id)
    if partner.status is not PartnerStatus.active:
        raise PartnerInactive(f"partner {partner_id} is inactive: it takes no attributions")
    return await repo.insert_attribution(
        conn,
        user_external_id=user_external_id,
        partner_id=partner_id,
        valid_from=valid_from,
        valid_until=valid_until,
        by=by,
    )


async def earnings(
    conn: AsyncConnection, partner_id: str, *, limit: int
) -> tuple[Partner, Totals, list[Share], list[Reversal]]:
    partner = await require_partner(conn, partner_id)
    return (
        partner,
        await repo.totals(conn, partner_id),
        await repo.recent_shares(conn, partner_id, limit),
        await repo.recent_reversals(conn, partner_id, limit),
    )
