"""Communities as Cashfree Easy Split vendors (cashfree.md §6.1, §14): registering one,
keeping its KYC status current, and telling the sponsorships which vendor (if any) takes a
community's part.

Registration sends the community payee's current, verified payout account (opened only
here, through `payees.disclosure`) with the KYC details finance gives, under a vendor id
derived from the community's id: a retry, a crash after Cashfree's answer or a second
registration can only ever name the same vendor. Cashfree checks the vendor (KYC, the bank
account) on its own clock: the vendor is IN_BENE_CREATION until then, and only an ACTIVE
vendor is given split sponsorships. Its status is asked again whenever it is read, before a
sponsorship chooses its path, and by the `refresh_split_vendors` job for vendors still in KYC.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
    SplitVendorAccountCoolingOff,
    SplitVendorAccountMissing,
    SplitVendorNotFound,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeError,
    CashfreeRateLimited,
    CashfreeRejected,
)
from commdesk_billing.gateway.split_models import Vendor
from commdesk_billing.modules.payees import disclosure
from commdesk_billing.modules.splits import repository as repo
from commdesk_billing.modules.splits.model import SplitVendor, vendor_id_for
from commdesk_billing.modules.splits.schemas import VendorRequest
from commdesk_billing.security.sealed import KeyRing, mask

log = structlog.get_logger(__name__)


def _unavailable(exc: CashfreeError) -> GatewayUnavailable:
    if isinstance(exc, CashfreeRateLimited):
        return GatewayRateLimited(
            "Cashfree is rate-limiting us; nothing was changed: repeat after Retry-After",
            retry_after_s=max(1, math.ceil(exc.retry_after_s)),
        )
    if isinstance(exc, CashfreeAuthError):
        log.error("splits.cashfree.auth_refused", code=exc.code)
    return GatewayUnavailable(
        "Cashfree did not answer; nothing was changed: repeat with the same Idempotency-Key",
        retry_after_s=5,
    )


def _scrubbed(text: str) -> str:
    """Cashfree's error text as we pass it on: any long digit run (an account number it may
    quote) shown masked."""
    return re.sub(r"\d{6,}", lambda m: mask(m.group()), text)


def _remarks(v: Vendor) -> str | None:
    return _scrubbed(v.remarks or "")[:500] or None


async def register(
    conn: AsyncConnection,
    client: CashfreeClient,
    ring: KeyRing,
    *,
    community_id: str,
    req: VendorRequest,
    by: str,
) -> SplitVendor:
    """Register (or register again, with a changed account or KYC details) the community
    as a vendor at Cashfree, and record it. Raises SplitVendorAccountMissing,
    SplitVendorAccountCoolingOff, or GatewayRejected / GatewayUnavailable with nothing
    stored."""
    existing = await repo.get(conn, community_id, lock=True)
    account = await disclosure.for_vendor(conn, ring, community_id)
    if account is None:
        raise SplitVendorAccountMissing(
            f"community {community_id} has no payee with a verified current payout account: "
            "its owners set one first (PUT /v1/payees/{id}/payout-account)"
        )
    if account.payouts_blocked_until > datetime.now(UTC):
        # Cashfree settles a vendor's parts straight to the account it holds: sending one
        # still in its cooling-off would pay it before any settlement of ours could, past
        # the rule that gives finance time to catch a redirected account. Nothing is sent
        # (a registered vendor keeps the account it has); register again once it is over.
        raise SplitVendorAccountCoolingOff(
            f"community {community_id}'s payout account is in its cooling-off until "
            f"{account.payouts_blocked_until.isoformat()}: register it after that",
            payouts_blocked_until=account.payouts_blocked_until.isoformat(),
        )
    vendor_id = vendor_id_for(community_id)
    kyc = {
        "account_type": req.account_type,
        "business_type": req.business_type,
        "pan": req.pan,
        **({"gst": req.gstin} if req.gstin else {}),
    }
    new_account = existing is None or existing.account_id != account.account_id
    try:
        if existing is None:
            try:
                vendor = await client.create_vendor(
                    vendor_id=vendor_id,
                    name=req.name,
                    email=req.email,
                    phone=req.phone,
                    kyc_details=kyc,
                    account_holder=account.holder,
                    bank_account_number=account.number,
                    bank_ifsc=account.ifsc,
                    vpa=account.vpa,
                )
            except CashfreeConflict:
                # Ours already (a registration whose answer we lost), with other details
                # since: they are brought up to date.
                new_account = True
                vendor = await _update(client, vendor_id, req, kyc, account, new_account)
        else:
            vendor = await _update(client, vendor_id, req, kyc, account, new_account)
    except CashfreeRejected as exc:
        if isinstance(exc, CashfreeAuthError):
            raise _unavailable(exc) from exc
        raise GatewayRejected(
            _scrubbed(f"Cashfree refused the vendor: {exc.code or 'rejected'}: {exc.message}")[
                :500
            ],
            gateway_status=exc.status,
        ) from exc
    except CashfreeError as exc:
        raise _unavailable(exc) from exc
    now = datetime.now(UTC)
    recorded = await repo.upsert(
        conn,
        SplitVendor(
            community_id=community_id,
            vendor_id=vendor_id,
            payee_id=account.payee_id,
            account_id=account.account_id,
            method=account.method.value,
            account_mask=account.mask,
            name=req.name,
            email=req.email,
            phone=req.phone,
            account_type=req.account_type,
            business_type=req.business_type,
            pan_mask="X" * 6 + req.pan[-4:],
            gstin=req.gstin,
            status=vendor.status[:40],
            remarks=_remarks(vendor),
            status_checked_at=now,
            created_by=by,
            created_at=now,
            updated_at=now,
        ),
    )
    log.info(
        "splits.vendor.registered",
        community_id=community_id,
        vendor_id=vendor_id,
        status=recorded.status,
        account=account.mask,
        new_account=new_account,
    )
    return recorded


async def _update(
    client: CashfreeClient,
    vendor_id: str,
    req: VendorRequest,
    kyc: dict[str, str],
    account: disclosure.VendorAccount,
    new_account: bool,
) -> Vendor:
    """A new account sends the vendor through Cashfree's checks again; the same one is not
    sent (nothing to check again)."""
    return await client.update_vendor(
        vendor_id,
        name=req.name,
        email=req.email,
        phone=req.phone,
        kyc_details=kyc,
        account_holder=account.holder,
        bank_account_number=account.number if new_account else None,
        bank_ifsc=account.ifsc if new_account else None,
        vpa=account.vpa if new_account else None,
    )


async def require(conn: AsyncConnection, community_id: str) -> SplitVendor:
    vendor = await repo.get(conn, community_id)
    if vendor is None:
        raise SplitVendorNotFound(f"community {community_id} is not an Easy Split vendor")
    return vendor


async def refresh(
    engine: AsyncEngine, client: CashfreeClient, community_id: str
) -> SplitVendor | None:
    """The community's vendor with its status as Cashfree says it now (None: not a vendor).
    Cashfree away: the vendor as last seen (its `status_checked_at` says when)."""
    vendor = await in_transaction(engine, lambda conn: repo.get(conn, community_id))
    if vendor is None:
        return None
    try:
        answer = await client.get_vendor(vendor.vendor_id)
    except CashfreeError as exc:
        log.warning(
            "splits.vendor.refresh_failed",
            community_id=community_id,
            vendor_id=vendor.vendor_id,
            error=type(exc).__name__,
        )
        return vendor
    status, remarks = answer.status[:40], _remarks(answer)
    if status != vendor.status:
        log.info(
            "splits.vendor.status",
            community_id=community_id,
            vendor_id=vendor.vendor_id,
            was=vendor.status,
            now=status,
        )
    updated = await in_transaction(
        engine,
        lambda conn: repo.set_status(conn, community_id, status, remarks, datetime.now(UTC)),
    )
    return updated or vendor


async def active_vendor(
    engine: AsyncEngine, client: CashfreeClient, community_id: str
) -> str | None:
    """The vendor id a sponsorship of the community is split to: its vendor's, when that
    vendor is ACTIVE at Cashfree now and the account it was registered with is still what
    the community's payee may be paid to (the payee active, the account its current,
    verified one); else None (the escrow path)."""
    vendor = await refresh(engine, client, community_id)
    if vendor is None or not vendor.active:
        return None
    registered = vendor.account_id
    if not await in_transaction(
        engine, lambda conn: disclosure.still_current(conn, community_id, registered)
    ):
        # Cashfree would settle the part to the account it holds: a suspended payee is never
        # paid, and a replaced account is no longer the community's. Escrow until finance
        # registers the vendor again (with the current account, past its cooling-off).
        log.warning(
            "splits.vendor.account_not_current",
            community_id=community_id,
            vendor_id=vendor.vendor_id,
            account=vendor.account_mask,
        )
        return None
    return vendor.vendor_id


async def any_waiting(engine: AsyncEngine) -> bool:
    return bool(await in_transaction(engine, lambda conn: repo.waiting(conn, 1)))


async def refresh_waiting(engine: AsyncEngine, client: CashfreeClient, limit: int = 50) -> int:
    """The scheduler's job: ask Cashfree about vendors still in KYC. Returns how many."""
    waiting = await in_transaction(engine, lambda conn: repo.waiting(conn, limit))
    for community_id in waiting:
        await refresh(engine, client, community_id)
    return len(waiting)
