"""Payees and their payout accounts (DESIGN §11).

A payee is a community (CommDesk's MongoDB) or a partner (`partners`), one each. Its payout
account is versioned: a change is a new version, verified at Cashfree before it is stored
(`verification.py`), and the version it replaces is superseded in the same transaction.

The rules a settlement relies on (`targets.py` reads them):
- only the current version is ever paid, and only once `verified` with a beneficiary;
- cooling-off: the first account a payee has verified is payable at once; any account
  after one that was verified is payable only from `payouts_blocked_until` = its creation +
  `BILLING_PAYOUT_COOLING_OFF_S` (at least 1 s; the row keeps the seconds used,
  `cooling_off_s`). A failed first attempt is not a payable account, so the attempt after
  it is still a "first" (nothing could have been redirected);
- a suspended payee is never paid (its account may still be changed).

"In use" is another payee's current *verified* account: a failed attempt at someone
else's account blocks nobody.

Every change ends `verified` or `failed`, or raises (Cashfree away: nothing stored): no
version is left `pending`, so nothing needs verifying later. A failed version is fixed by a
new PUT.

The account number is sealed under the payee's id (`security/sealed.py`) before it reaches
a row, and only its mask is ever shown or logged.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    GatewayUnavailable,
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


# A change holds its pooled connection and its locks through the Cashfree calls (BAV, the
# beneficiary: at most a few each, every one bounded by the client's timeout and retries);
# past this the change gives up as Cashfree being away (503, nothing stored).
CASHFREE_BUDGET = timedelta(seconds=45)
# A VPA's mask shows at most this many X for its handle (a long handle must fit the column).
_VPA_MASK_X = 8


@dataclass(frozen=True)
class AccountRequest:
    """A payout account as asked for: a bank account (number + IFSC) or a UPI VPA."""

    method: PayoutMethod
    holder: str
    number: str | None = field(default=None, repr=False)
    ifsc: str | None = None
    vpa: str | None = field(default=None, repr=False)

    def fingerprint(self, ring: KeyRing) -> str:
        """One account, one fingerprint, in the method's own namespace.

        A bank account is its number at its bank: the IFSC's bank code (its first four
        letters) and the number without leading zeros. The same number at another bank is
        another account; at another branch of the same bank it is the same one (Indian
        banks number accounts bank-wide; IMPS itself routes by the bank). Leading zeros are
        padding to the bank's fixed length, so `0012345` and `12345` at one bank can only
        be one account: counting them as one keeps one account to one payee."""
        if self.method is PayoutMethod.bank:
            assert self.number is not None and self.ifsc is not None
            return ring.fingerprint(f"bank:{self.ifsc[:4]}:{self.number.lstrip('0') or '0'}")
        assert self.vpa is not None
        return ring.fingerprint("vpa:" + self.vpa.lower())

    def mask(self) -> str:
        if self.method is PayoutMethod.bank:
            assert self.number is not None
            return mask(self.number)
        assert self.vpa is not None
        handle, _, bank = self.vpa.partition("@")
        hidden = "X" * min(_VPA_MASK_X, max(1, len(handle) - 2))
        return f"{handle[:2]}{hidden}@{bank}"

    def instrument(self) -> verification.Instrument:
        return verification.Instrument(number=self.number, ifsc=self.ifsc, vpa=self.vpa)


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


async def _verify(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    policy: Policy,
    payee_id: uuid.UUID,
    version: int,
    req: AccountRequest,
    fingerprint: str,
    *,
    again: bool,
) -> tuple[verification.Outcome, str | None]:
    """Cashfree's verdict on the account and its beneficiary id (None unless verified).
    `again`: the current account, verified already (BAV is not repeated; its beneficiary
    is confirmed, and repaired if Cashfree lost it)."""
    if again:
        outcome = verification.Outcome(Verification.verified)
    elif req.method is PayoutMethod.bank:
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
    if outcome.status is not Verification.verified:
        return outcome, None
    beneficiary_id, why = await verification.register(
        conn,
        client,
        payee_id=payee_id,
        version=version,
        holder=req.holder,
        fingerprint=fingerprint,
        instrument=req.instrument(),
    )
    if why is not None:
        return replace(outcome, status=Verification.failed, detail=why), None
    return outcome, beneficiary_id


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
    and False when `req` is that very account, verified already, and its beneficiary is
    still at Cashfree (re-added if it was lost): no new version, no new cooling-off.
    Raises GatewayUnavailable when Cashfree is away (nothing stored), PayoutAccountInUse
    when another payee is paid to this account now, PayoutBeneficiaryConflict when Cashfree
    holds the account in a way a retry cannot change."""
    await repo.serialize_changes(conn, payee_id)
    await require_payee(conn, payee_id)
    fingerprint = req.fingerprint(ring)
    await repo.serialize_account(conn, fingerprint)
    current = await repo.current_account(conn, payee_id)
    again = _same(current, req, fingerprint)
    if not again and await repo.fingerprint_elsewhere(conn, fingerprint, payee_id):
        raise PayoutAccountInUse("this account is another payee's payout account")
    version = await repo.latest_version(conn, payee_id) + 1
    try:
        async with asyncio.timeout(CASHFREE_BUDGET.total_seconds()):
            outcome, beneficiary_id = await _verify(
                conn, client, policy, payee_id, version, req, fingerprint, again=again
            )
    except TimeoutError as exc:
        log.warning("payees.cashfree.too_slow", payee_id=str(payee_id))
        raise GatewayUnavailable(
            "Cashfree did not finish verifying the account in time; nothing was changed"
        ) from exc
    if again and outcome.status is Verification.verified:
        assert current is not None and beneficiary_id == current.beneficiary_id
        return current, False
    at = at or datetime.now(UTC)
    # The payee's row, as a settlement locks it: none is paid halfway through the change.
    await repo.lock_payee(conn, payee_id)
    # Cooling-off: none for a payee's first verified account (nothing could be redirected),
    # and never none after one (a zero setting would let a changed account be paid at once).
    cooling_off_s = 0
    if await repo.ever_verified(conn, payee_id):
        cooling_off_s = int(policy.cooling_off.total_seconds())
        if cooling_off_s < 1:
            raise ValueError("a changed payout account needs a cooling-off of at least 1 s")
    status = outcome.status
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
        name_match_min=policy.name_match_min if req.method is PayoutMethod.bank else None,
        name_match_score=outcome.name_match_score,
        name_at_bank=outcome.name_at_bank,
        verification_ref=outcome.reference,
        verification_detail=verification.clean(outcome.detail, 500),
        verified_at=at if status is Verification.verified else None,
        beneficiary_id=beneficiary_id,
        payouts_blocked_until=at + timedelta(seconds=cooling_off_s),
        cooling_off_s=cooling_off_s,
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
