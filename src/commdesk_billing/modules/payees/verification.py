"""What Cashfree says of a payout account: its bank-account verification (a bank account:
valid, and how well the holder's name matches the bank's) and its beneficiary (the one
transfers go to).

- A bank account is verified by Secure ID's bank-account verification (BAV) with the
  holder's name; it is accepted when VALID and its name match is at least
  `BILLING_PAYOUT_NAME_MATCH_MIN` (Cashfree's levels, `NAME_MATCH_RANK`); anything else is
  a `failed` version with the reason, never paid.
- A UPI VPA is not covered by BAV (it takes an account number and IFSC): adding the VPA as
  a beneficiary is its verification, and the beneficiary's status says whether it is
  usable (VERIFIED). No name match is reported for a VPA.
- An accepted account becomes a beneficiary whose id is the payee's and the version's
  (`beneficiary_id_for`): a repeat after a crash or a 5xx adds nothing twice.

Cashfree away (5xx, timeout, 429) raises GatewayUnavailable / GatewayRateLimited: the
caller's transaction is rolled back and nothing is stored. Error text from Cashfree is never
copied into a detail (it may quote the number): only its code.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import GatewayRateLimited, GatewayUnavailable
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeRejected,
)
from commdesk_billing.gateway.payouts import BENEFICIARY_EXISTS, CashfreePayoutsClient
from commdesk_billing.modules.payees import repository as repo
from commdesk_billing.modules.payees.model import Verification

log = structlog.get_logger(__name__)

# Cashfree's name-match levels, weakest first (cashfree.md §13.4).
NAME_MATCH_RANK = {
    "NO_MATCH": 0,
    "POOR_PARTIAL_MATCH": 1,
    "MODERATE_PARTIAL_MATCH": 2,
    "GOOD_PARTIAL_MATCH": 3,
    "DIRECT_MATCH": 4,
}
# The same account (or VPA) already a beneficiary under another id.
ACCOUNT_IS_BENEFICIARY = "beneficiary_already_exists"


@dataclass(frozen=True)
class Outcome:
    status: Verification
    detail: str | None = None
    name_match_result: str | None = None
    name_match_score: Decimal | None = None
    name_at_bank: str | None = None
    reference: str | None = None
    beneficiary_id: str | None = None


def beneficiary_id_for(payee_id: uuid.UUID, version: int) -> str:
    """The Cashfree beneficiary of one account version (1-50 of letters, digits, `_|.`)."""
    return f"cdb{payee_id.hex}v{version}"


def accepted(result: str | None, minimum: str) -> bool:
    return result is not None and NAME_MATCH_RANK.get(result, -1) >= NAME_MATCH_RANK[minimum]


def _score(text: str | None) -> Decimal | None:
    try:
        score = Decimal(text) if text is not None else None
    except InvalidOperation:
        return None
    return score if score is not None and Decimal(0) <= score <= Decimal(100) else None


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
        return Outcome(Verification.failed, f"Cashfree refused the account ({exc.code})")
    except CashfreeError as exc:
        raise unavailable(exc) from exc
    found = Outcome(
        Verification.failed,
        name_match_result=bav.name_match_result,
        name_match_score=_score(bav.name_match_score),
        name_at_bank=(bav.name_at_bank or None) and bav.name_at_bank[:200],
        reference=str(bav.reference_id)[:100],
    )
    if not bav.valid:
        code = bav.account_status_code or bav.account_status
        return _with(found, f"the bank account is not valid ({code})")
    if not accepted(bav.name_match_result, minimum):
        return _with(
            found,
            f"the name at the bank matches {bav.name_match_result or 'nothing reported'}; "
            f"at least {minimum} is needed",
        )
    return _with(found, None, Verification.verified)


def _with(o: Outcome, detail: str | None, status: Verification | None = None) -> Outcome:
    return Outcome(
        status or o.status,
        detail,
        o.name_match_result,
        o.name_match_score,
        o.name_at_bank,
        o.reference,
        o.beneficiary_id,
    )


async def register(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    *,
    payee_id: uuid.UUID,
    version: int,
    holder: str,
    fingerprint: str,
    number: str | None = None,
    ifsc: str | None = None,
    vpa: str | None = None,
) -> tuple[str | None, str | None]:
    """(beneficiary id, None) once Cashfree holds the account as a usable beneficiary, else
    why not (with the id if Cashfree made one all the same). Called under the payee's
    change lock (`repo.serialize_changes`)."""
    beneficiary_id = beneficiary_id_for(payee_id, version)
    details = {"bank_account_number": number, "bank_ifsc": ifsc, "vpa": vpa}
    try:
        for attempt in (1, 2):
            try:
                bene = await client.add_beneficiary(
                    beneficiary_id=beneficiary_id, name=holder, **details
                )
                break
            except CashfreeConflict as exc:
                if attempt == 2:
                    raise
                if exc.code == BENEFICIARY_EXISTS:
                    # Our id with other details: left by an attempt at this version that
                    # never committed (no row names it; the change lock keeps others out).
                    if await repo.beneficiary_recorded(conn, beneficiary_id):
                        raise
                    await _remove(client, beneficiary_id)
                elif exc.code == ACCOUNT_IS_BENEFICIARY:
                    # Cashfree holds one beneficiary per account. The ones we recorded for it
                    # give way: another payee's are superseded (it is no other payee's
                    # current account, checked under the account's lock), and so is this
                    # payee's unless it is this very account, re-verified. One we never
                    # recorded is not ours to remove.
                    stale = await repo.beneficiaries_of(conn, fingerprint)
                    if not stale:
                        return None, "Cashfree holds this account as a beneficiary we do not know"
                    for old in stale:
                        await _remove(client, old)
                else:
                    raise
    except CashfreeAuthError as exc:
        raise unavailable(exc) from exc
    except CashfreeRejected as exc:
        return None, f"Cashfree refused the beneficiary ({exc.code})"
    except CashfreeError as exc:
        raise unavailable(exc) from exc
    if bene.beneficiary_status not in (None, "VERIFIED"):
        # Recorded all the same: it exists at Cashfree under this version's id.
        return beneficiary_id, f"Cashfree holds the beneficiary as {bene.beneficiary_status}"
    return beneficiary_id, None


async def _remove(client: CashfreePayoutsClient, beneficiary_id: str) -> None:
    with contextlib.suppress(CashfreeNotFound):  # gone already
        await client.remove_beneficiary(beneficiary_id)
    log.info("payees.beneficiary.removed", beneficiary_id=beneficiary_id)
