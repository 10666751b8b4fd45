"""What Cashfree says of a payout account: its bank-account verification (a bank account:
valid, and how well the holder's name matches the bank's) and its beneficiary (the one
transfers go to).

- A bank account is verified by Secure ID's bank-account verification (BAV) with the
  holder's name; it is accepted when VALID and its name match is at least the policy's
  floor (`BILLING_PAYOUT_NAME_MATCH_MIN`, Cashfree's levels, `NAME_MATCH_RANK`); anything
  else is a `failed` version with the reason, never paid.
- A UPI VPA is not covered by BAV (it takes an account number and IFSC), and this service
  does not verify a VPA holder's name: adding the VPA as a beneficiary is all its
  verification (the beneficiary's status says whether Cashfree can pay it). No name match
  is reported for a VPA, and none is pretended.
- A payee's account has one beneficiary (`model.beneficiary_id_for`): the version that
  first registered it names it, and later versions of the same account reuse it. Cashfree
  holds one beneficiary per account, so re-adding the current account under a new version
  never deletes the beneficiary the current version is paid to: it is confirmed (and
  re-added under its own id if Cashfree lost it) and reused.
- A beneficiary is deleted at Cashfree only when it is in the way of the account being
  added and no current version names it: one left by an attempt that never committed (no
  row names its id), or a superseded version's (never paid again; another payee takes the
  account over). Superseded beneficiaries otherwise stay at Cashfree, harmless: a
  settlement pays only the current version's.

Cashfree away (5xx, timeout, 429) raises GatewayUnavailable / GatewayRateLimited: the
caller's transaction is rolled back and nothing is stored. A conflict a retry cannot solve
raises PayoutBeneficiaryConflict (409). Error text from Cashfree is never copied into a
detail (it may quote the number): only its code, cleaned.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    GatewayRateLimited,
    GatewayUnavailable,
    PayoutBeneficiaryConflict,
)
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeRejected,
)
from commdesk_billing.gateway.payout_models import Beneficiary
from commdesk_billing.gateway.payouts import BENEFICIARY_EXISTS, CashfreePayoutsClient
from commdesk_billing.modules.payees import repository as repo
from commdesk_billing.modules.payees.model import Verification
from commdesk_billing.modules.payees.model import beneficiary_id_for as beneficiary_id_for

log = structlog.get_logger(__name__)

# Cashfree's name-match levels, weakest first (cashfree.md §13.4). The schema's CHECKs and
# the verify check name the same five.
NAME_MATCH_RANK = {
    "NO_MATCH": 0,
    "POOR_PARTIAL_MATCH": 1,
    "MODERATE_PARTIAL_MATCH": 2,
    "GOOD_PARTIAL_MATCH": 3,
    "DIRECT_MATCH": 4,
}
# The same account (or VPA) already a beneficiary under another id.
ACCOUNT_IS_BENEFICIARY = "beneficiary_already_exists"
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Outcome:
    status: Verification
    detail: str | None = None
    name_match_result: str | None = None
    name_match_score: Decimal | None = None
    name_at_bank: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Instrument:
    """Where Cashfree pays: a bank account + IFSC, or a VPA."""

    number: str | None = None
    ifsc: str | None = None
    vpa: str | None = None

    def __repr__(self) -> str:  # the number never reaches a log through a repr
        return f"Instrument(ifsc={self.ifsc!r}, vpa={'…' if self.vpa else None})"

    def held_by(self, bene: Beneficiary) -> bool:
        held = bene.beneficiary_instrument_details
        return held is not None and (
            held.bank_account_number,
            held.bank_ifsc,
            (held.vpa or "").lower() or None,
        ) == (self.number, self.ifsc, self.vpa)


def accepted(result: str | None, minimum: str) -> bool:
    return result is not None and NAME_MATCH_RANK.get(result, -1) >= NAME_MATCH_RANK[minimum]


def clean(text: object, limit: int) -> str | None:
    """Cashfree's text as a column may hold it: printable characters only (no NUL, no
    control characters), at most `limit`, None when nothing is left."""
    if text is None:
        return None
    kept = "".join(c for c in str(text) if c.isprintable()).strip()[:limit].strip()
    return kept or None


def _score(text: str | None) -> Decimal | None:
    """Cashfree's 0-100 score, to the cent; anything else (unreadable, NaN, infinite, out
    of range) is no score."""
    if text is None:
        return None
    try:
        score = Decimal(text)
        if not score.is_finite() or not Decimal(0) <= score <= Decimal(100):
            return None
        return score.quantize(_CENT)
    except (InvalidOperation, ValueError):
        return None


def unavailable(exc: CashfreeError) -> GatewayUnavailable:
    """The problem a Cashfree outage is answered with (nothing was stored)."""
    if isinstance(exc, CashfreeRateLimited):
        return GatewayRateLimited(
            "Cashfree is rate-limiting us; nothing was changed: repeat after Retry-After",
            retry_after_s=max(1, math.ceil(exc.retry_after_s)),
        )
    if isinstance(exc, CashfreeAuthError):
        # Our credentials, not the payee's account: never a `failed` version.
        log.error("payees.cashfree.auth_refused", code=exc.code)
    return GatewayUnavailable("Cashfree could not verify the account now; nothing was changed")


async def verify_bank(
    client: CashfreePayoutsClient, *, number: str, ifsc: str, holder: str, minimum: str
) -> Outcome:
    """BAV with the holder's name: `verified` when valid and matching well enough (no
    beneficiary yet), else `failed` with why."""
    try:
        bav = await client.verify_bank_account(bank_account_number=number, ifsc=ifsc, name=holder)
    except CashfreeAuthError as exc:
        raise unavailable(exc) from exc
    except CashfreeRejected as exc:
        return Outcome(Verification.failed, f"Cashfree refused the account ({clean(exc.code, 60)})")
    except CashfreeError as exc:
        raise unavailable(exc) from exc
    reported = clean(bav.name_match_result, 40)
    level = reported if reported in NAME_MATCH_RANK else None
    found = Outcome(
        Verification.failed,
        name_match_result=level,
        name_match_score=_score(bav.name_match_score),
        name_at_bank=clean(bav.name_at_bank, 200),
        reference=clean(bav.reference_id, 100),
    )
    if not bav.valid:
        code = clean(bav.account_status_code or bav.account_status, 60)
        return replace(found, detail=f"the bank account is not valid ({code})")
    if not accepted(level, minimum):
        said = level or ("an unknown level" if reported else "nothing reported")
        return replace(
            found, detail=f"the name at the bank matches {said}; at least {minimum} is needed"
        )
    return replace(found, status=Verification.verified)


async def register(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    *,
    payee_id: uuid.UUID,
    version: int,
    holder: str,
    fingerprint: str,
    instrument: Instrument,
) -> tuple[str | None, str | None]:
    """(beneficiary id, None) once Cashfree holds the account as a usable beneficiary for
    this payee, else (None, why not): a `failed` version, with no beneficiary left at
    Cashfree for it. `version` is the version being made. Called under the payee's change
    lock and the account's lock (`repo.serialize_changes`, `repo.serialize_account`).

    The payee's own beneficiary of this account (an earlier version's, the current one's
    included) is confirmed at Cashfree and reused, re-added under its id if Cashfree lost
    it; else the new version's id is added."""
    try:
        own = await repo.own_beneficiary(conn, payee_id, fingerprint)
        if own is not None:
            held = await _held(client, own)
            if held is not None:
                if not instrument.held_by(held):
                    # Our recorded id holds another account at Cashfree: not ours to fix.
                    log.error("payees.beneficiary.differs", beneficiary_id=own)
                    raise PayoutBeneficiaryConflict(
                        "Cashfree holds this payee's beneficiary with other account details; "
                        "nothing was changed (support must resolve it)"
                    )
                return _usable(own, held)
            log.warning("payees.beneficiary.missing", beneficiary_id=own)
        beneficiary_id = own or beneficiary_id_for(payee_id, version)
        bene = await _add(conn, client, beneficiary_id, holder, fingerprint, instrument)
        if own is not None:
            log.warning("payees.beneficiary.repaired", beneficiary_id=own)
        found, why = _usable(beneficiary_id, bene)
        if found is None and own is None:
            # Made for this version alone, which is stored failed: gone again, so no
            # unusable beneficiary of ours holds the account.
            await _remove(client, beneficiary_id)
        return found, why
    except CashfreeAuthError as exc:
        raise unavailable(exc) from exc
    except CashfreeConflict as exc:  # before CashfreeRejected, which it is
        # What is left after the one removal that may be ours to make: a retry is no help.
        log.error("payees.beneficiary.conflict", code=exc.code)
        raise PayoutBeneficiaryConflict(
            "Cashfree holds this account under a beneficiary that cannot be replaced "
            f"({clean(exc.code, 60)}); nothing was changed (support must resolve it)"
        ) from exc
    except CashfreeRejected as exc:
        return None, f"Cashfree refused the beneficiary ({clean(exc.code, 60)})"
    except CashfreeError as exc:
        raise unavailable(exc) from exc


def _usable(beneficiary_id: str, bene: Beneficiary) -> tuple[str | None, str | None]:
    if bene.beneficiary_status not in (None, "VERIFIED"):
        status = clean(bene.beneficiary_status, 40)
        return None, f"Cashfree holds the beneficiary as {status}"
    return beneficiary_id, None


async def _held(client: CashfreePayoutsClient, beneficiary_id: str) -> Beneficiary | None:
    try:
        return await client.get_beneficiary(beneficiary_id)
    except CashfreeNotFound:
        return None


async def _add(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    beneficiary_id: str,
    holder: str,
    fingerprint: str,
    instrument: Instrument,
) -> Beneficiary:
    """Add the beneficiary; on a conflict, remove what is ours to remove (never one a
    current version names) and add once more. A second conflict is raised."""
    details = {
        "bank_account_number": instrument.number,
        "bank_ifsc": instrument.ifsc,
        "vpa": instrument.vpa,
    }
    try:
        return await client.add_beneficiary(beneficiary_id=beneficiary_id, name=holder, **details)
    except CashfreeConflict as exc:
        if exc.code == BENEFICIARY_EXISTS:
            # Our id with other details. Unrecorded: left by an attempt that never
            # committed (no row names it; the change lock keeps others out). Recorded: a
            # version names it, and it is not ours to delete.
            if await repo.beneficiary_recorded(conn, beneficiary_id):
                raise
            await _remove(client, beneficiary_id)
        elif exc.code == ACCOUNT_IS_BENEFICIARY:
            # Cashfree holds one beneficiary per account. The superseded ones we recorded
            # for it give way (never paid again); one a current version names never does,
            # nor one we never recorded.
            held = [
                (b, current)
                for b, current in await repo.beneficiaries_of(conn, fingerprint)
                if b != beneficiary_id
            ]
            if not held or any(current for _, current in held):
                raise
            for old, _ in held:
                await _remove(client, old)
        else:
            raise
    return await client.add_beneficiary(beneficiary_id=beneficiary_id, name=holder, **details)


async def _remove(client: CashfreePayoutsClient, beneficiary_id: str) -> None:
    with contextlib.suppress(CashfreeNotFound):  # gone already
        await client.remove_beneficiary(beneficiary_id)
    log.info("payees.beneficiary.removed", beneficiary_id=beneficiary_id)
