"""Payees and their payout accounts (DESIGN §11).

A payee is a community (CommDesk's MongoDB) or a partner (`partners`), one each. Its payout
account is versioned: a change is a new version, verified at Cashfree before it is stored
(`verification.py`), and the version it replaces is superseded in the same transaction.

The rules a settlement relies on (`targets.py` reads them):
- only the current version is ever paid, and only once `verified` with a beneficiary;
- cooling-off: the first account a payee has verified is payable at once; any account
  after one that was verified is payable only from `payouts_blocked_until` = its creation +
  `BILLING_PAYOUT_COOLING_OFF_S`. A failed first attempt is not a payable account, so the
  attempt after it is still a "first" (nothing could have been redirected);
- a suspended payee is never paid (its account may still be changed).

Every change ends `verified` or `failed`, or raises (Cashfree away: nothing stored): no
version is left `pending`, so nothing needs verifying later. A failed version is fixed by a
new PUT.

The account number is sealed under the payee's id (`security/sealed.py`) before it reaches
a row, and only its mask is ever shown or logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    PayeeExists,
    PayeeNotFound,
    PayoutAccountInUse,
    PayoutAccountNotFound,
)
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.payees import repository as repo
from commdesk_billing.modules.payees import verification
from commdesk_billing.modules.payees.model import (
    Payee,
    PayeeKind,
    PayeeStatus,
    PayoutAccount,
    PayoutMethod,
    Verification,
)
from commdesk_billing.security.sealed import KeyRing, mask

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AccountRequest:
    """A payout account as asked for: a bank account (number + IFSC) or a UPI VPA."""

    method: PayoutMethod
    holder: str
    number: str | None = field(default=None, repr=False)
    ifsc: str | None = None
    vpa: str | None = None

    def fingerprint(self, ring: KeyRing) -> str:
        """One account, one fingerprint (a VPA's in its own namespace)."""
        if self.method is PayoutMethod.bank:
            assert self.number is not None
            return ring.fingerprint(self.number)
        assert self.vpa is not None
        return ring.fingerprint("vpa:" + self.vpa.lower())

    def mask(self) -> str:
        if self.method is PayoutMethod.bank:
            assert self.number is not None
            return mask(self.number)
        assert self.vpa is not None
        handle, _, bank = self.vpa.partition("@")
        return f"{handle[:2]}{'X' * max(1, len(handle) - 2)}@{bank}"


@dataclass(frozen=True)
class Policy:
    """The settings an account change follows."""

    cooling_off: timedelta
    name_match_min: str


async def create_payee(
    conn: AsyncConnection, *, kind: PayeeKind, subject_id: str, display_name: str, by: str
) -> Payee:
    payee = await repo.insert_payee(
        conn, kind=kind, subject_id=subject_id, display_name=display_name, by=by
    )
    if payee is None:
        raise PayeeExists(f"this {kind.value} is a payee already", kind=kind.value)
    log.info("payee.created", payee_id=str(payee.id), kind=kind.value)
    return payee


async def require_payee(conn: AsyncConnection, payee_id: uuid.UUID) -> Payee:
    payee = await repo.get_payee(conn, payee_id)
    if payee is None:
        raise PayeeNotFound(f"payee {payee_id} does not exist")
    return payee


async def require_account(conn: AsyncConnection, payee_id: uuid.UUID) -> PayoutAccount:
    account = await repo.current_account(conn, payee_id)
    if account is None:
        raise PayoutAccountNotFound(f"payee {payee_id} has no payout account yet")
    return account


async def set_status(conn: AsyncConnection, payee_id: uuid.UUID, status: PayeeStatus) -> Payee:
    await require_payee(conn, payee_id)
    payee = await repo.set_status(conn, payee_id, status)
    log.info("payee.status", payee_id=str(payee_id), status=status.value)
    return payee


def _same(current: PayoutAccount | None, req: AccountRequest, fingerprint: str) -> bool:
    """Is `req` the current account again, verified, held as it was asked for?"""
    return (
        current is not None
        and current.verification_status is Verification.verified
        and current.beneficiary_id is not None
        and current.method is req.method
        and current.account_fingerprint == fingerprint
        and current.account_holder == req.holder
        and current.ifsc == req.ifsc
        and current.vpa == req.vpa
    )


async def change_account(
    conn: AsyncConnection,
    *,
    client: CashfreePayoutsClient,
    ring: KeyRing,
    policy: Policy,
    payee_id: uuid.UUID,
    req: AccountRequest,
    by: str,
    at: datetime | None = None,
) -> tuple[PayoutAccount, bool]:
    """The payee's new current account (verified or failed) and True; or the current one
    and False when `req` is that very account, verified already (no new version, no new
    cooling-off). Raises GatewayUnavailable when Cashfree is away (nothing stored),
    PayoutAccountInUse when another payee is paid to this account now."""
    await repo.serialize_changes(conn, payee_id)
    await require_payee(conn, payee_id)
    fingerprint = req.fingerprint(ring)
    await repo.serialize_account(conn, fingerprint)
    current = await repo.current_account(conn, payee_id)
    if _same(current, req, fingerprint):
        assert current is not None
        return current, False
    if await repo.fingerprint_elsewhere(conn, fingerprint, payee_id):
        raise PayoutAccountInUse("this account is another payee's payout account")
    version = await repo.latest_version(conn, payee_id) + 1
    if req.method is PayoutMethod.bank:
        assert req.number is not None and req.ifsc is not None
        outcome = await verification.verify_bank(
            client,
            number=req.number,
            ifsc=req.ifsc,
            holder=req.holder,
            minimum=policy.name_match_min,
        )
    else:
        outcome = verification.Outcome(Verification.verified)  # the beneficiary decides
    beneficiary_id = None
    detail = outcome.detail
    if outcome.status is Verification.verified:
        beneficiary_id, detail = await verification.register(
            conn,
            client,
            payee_id=payee_id,
            version=version,
            holder=req.holder,
            fingerprint=fingerprint,
            number=req.number,
            ifsc=req.ifsc,
            vpa=req.vpa,
        )
    status = Verification.verified if detail is None else Verification.failed
    at = at or datetime.now(UTC)
    # The payee's row, as a settlement locks it: none is paid halfway through the change.
    await repo.lock_payee(conn, payee_id)
    changed = await repo.ever_verified(conn, payee_id)
    account = PayoutAccount(
        id=uuid.uuid4(),
        payee_id=payee_id,
        version=version,
        method=req.method,
        account_holder=req.holder,
        account_sealed=(
            ring.seal(req.number, owner=str(payee_id)) if req.number is not None else None
        ),
        account_fingerprint=fingerprint,
        account_mask=req.mask(),
        ifsc=req.ifsc,
        vpa=req.vpa,
        verification_status=status,
        name_match_result=outcome.name_match_result,
        name_match_score=outcome.name_match_score,
        name_at_bank=outcome.name_at_bank,
        verification_ref=outcome.reference,
        verification_detail=detail,
        verified_at=at if status is Verification.verified else None,
        beneficiary_id=beneficiary_id,
        payouts_blocked_until=at + policy.cooling_off if changed else at,
        created_by=by,
        created_at=at,
        superseded_at=None,
    )
    await repo.insert_account(conn, account)
    log.info(
        "payee.account.changed",
        payee_id=str(payee_id),
        version=version,
        method=req.method.value,
        account=account.account_mask,
        verification=status.value,
        name_match=outcome.name_match_result,
        blocked_until=account.payouts_blocked_until.isoformat(),
    )
    return account, True
