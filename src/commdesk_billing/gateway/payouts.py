"""Async Cashfree Payouts V2 client (beneficiaries, standard transfers) and Secure ID
bank-account verification, over httpx, like the PG client (`client.py`).

Another Cashfree app with its own credentials, base URL (`…/payout`, cashfree.md §6.2) and
`x-api-version: 2024-01-01`; verification lives under `…/verification` (§13.4) and is sent
the same pair without a version. Errors are the PG client's (`errors.py`); a 422 here is a
refusal (e.g. an account that is our own), not an idempotency clash.

Paying twice is what this client must never cause:

- `create_transfer` is keyed by our `transfer_id`, which Cashfree keeps unique. After a 5xx,
  a timeout or an unreadable answer it never sends the create again before asking for the
  transfer (Cashfree's rule, §13.3): found, that is the answer; not found, the create is
  repeated under the same id; the status unknowable too, the error goes up (the outcome is
  unknown: the caller comes back later with the same id). A 409 on the id is answered with
  the transfer it names, when its amount and beneficiary are the ones asked for (else the
  conflict is raised).
- `add_beneficiary` folds a 409 on its id the same way.

Account numbers are never logged: error text is redacted before the transport logs it, and
the models hide them from their repr (`payout_models.mask` where a log must name one).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import structlog

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.payout_models import (
    BankAccountVerification,
    Beneficiary,
    Transfer,
)
from commdesk_billing.gateway.transport import Clients, RateLimitSink, Transport

log = structlog.get_logger(__name__)

PAYOUT_API_VERSION = "2024-01-01"
TRANSFER_EXISTS = "transfer_id_already_exists"
BENEFICIARY_EXISTS = "beneficiary_id_already_exists"

_LONG_DIGITS = re.compile(r"\d{5,}")
# A VPA (or an e-mail) quoted in an error: its handle hidden, the part after `@` kept.
_HANDLE_AT = re.compile(r"[A-Za-z0-9._-]+@(?=[A-Za-z0-9])")


def redact(text: str) -> str:
    """Every run of five or more digits shown as its last four, and the handle of a VPA
    (`name@bank`) hidden: an account number, a VPA, a phone or an id quoted in an error
    message cannot reach a log whole."""
    text = _HANDLE_AT.sub("XX@", text)
    return _LONG_DIGITS.sub(lambda m: "XXXX" + m.group()[-4:], text)


class CashfreePayoutsClient(Clients):
    def __init__(
        self,
        *,
        base_url: str,
        verification_base_url: str,
        client_id: str,
        client_secret: str,
        api_version: str = PAYOUT_API_VERSION,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        max_rate_limit_wait_s: float = 60.0,
        rate_limit_sink: RateLimitSink | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Retries, waits and the rate-limit sink mean what they mean for `CashfreeClient`;
        the sink is told of 429s from both APIs and closed with the client."""
        auth = {
            "x-client-id": client_id,
            "x-client-secret": client_secret,
            "accept": "application/json",
        }
        common: dict[str, Any] = {
            "timeout_s": timeout_s,
            "max_retries": max_retries,
            "backoff_s": backoff_s,
            "max_backoff_s": max_backoff_s,
            "max_rate_limit_wait_s": max_rate_limit_wait_s,
            "rate_limit_sink": rate_limit_sink,
            "transport": transport,
            "redact": redact,
            "unprocessable": CashfreeRejected,
        }
        self.max_retries = max_retries
        self._payout = Transport(
            base_url=base_url, headers=auth | {"x-api-version": api_version}, **common
        )
        self._verification = Transport(base_url=verification_base_url, headers=auth, **common)
        super().__init__(rate_limit_sink, self._payout, self._verification)

    # --- beneficiaries --------------------------------------------------------------------

    async def add_beneficiary(
        self,
        *,
        beneficiary_id: str,
        name: str,
        bank_account_number: str | None = None,
        bank_ifsc: str | None = None,
        vpa: str | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> Beneficiary:
        """Add a beneficiary (a bank account + IFSC, or a VPA). Safe to repeat: Cashfree keeps
        `beneficiary_id` unique, and a repeat of ours with the same details answers with the
        one already there. The same account under another id is a `CashfreeConflict`
        (`beneficiary_already_exists`)."""
        instrument = {
            k: v
            for k, v in (
                ("bank_account_number", bank_account_number),
                ("bank_ifsc", bank_ifsc),
                ("vpa", vpa),
            )
            if v
        }
        body: dict[str, Any] = {
            "beneficiary_id": beneficiary_id,
            "beneficiary_name": name,
            "beneficiary_instrument_details": instrument,
        }
        contact = {
            k: v for k, v in (("beneficiary_email", email), ("beneficiary_phone", phone)) if v
        }
        if contact:
            body["beneficiary_contact_details"] = contact
        try:
            return await self._payout.call(
                "payout_add_beneficiary",
                "POST",
                "/beneficiary",
                Beneficiary,
                body=body,
                retry_safe=True,
            )
        except CashfreeConflict as exc:
            if exc.code != BENEFICIARY_EXISTS:
                raise
            existing = await self.get_beneficiary(beneficiary_id)
            held = existing.beneficiary_instrument_details
            same = held is not None and (
                held.bank_account_number,
                held.bank_ifsc,
                held.vpa,
            ) == (bank_account_number, bank_ifsc, vpa)
            if not same or existing.beneficiary_name != name:
                raise
            return existing

    async def get_beneficiary(self, beneficiary_id: str) -> Beneficiary:
        return await self._payout.call(
            "payout_get_beneficiary",
            "GET",
            "/beneficiary",
            Beneficiary,
            params={"beneficiary_id": beneficiary_id},
        )

    async def remove_beneficiary(self, beneficiary_id: str) -> Beneficiary:
        """Delete a beneficiary. Not retried: a repeat after a lost answer is a 404."""
        return await self._payout.call(
            "payout_remove_beneficiary",
            "DELETE",
            "/beneficiary",
            Beneficiary,
            params={"beneficiary_id": beneficiary_id},
        )

    # --- bank-account verification --------------------------------------------------------

    async def verify_bank_account(
        self,
        *,
        bank_account_number: str,
        ifsc: str,
        name: str | None = None,
        phone: str | None = None,
        user_id: str | None = None,
    ) -> BankAccountVerification:
        """Verify an account at its bank (Secure ID BAV V2, sync) and, given a name, how well
        it matches the name at the bank. Retried like a read: it moves no money (a repeat is
        one more verification on Cashfree's bill)."""
        body: dict[str, Any] = {"bank_account": bank_account_number, "ifsc": ifsc}
        for key, value in (("name", name), ("phone", phone), ("user_id", user_id)):
            if value:
                body[key] = value
        return await self._verification.call(
            "bank_account_verify",
            "POST",
            "/bank-account/sync",
            BankAccountVerification,
            body=body,
            retry_safe=True,
        )

    # --- transfers ------------------------------------------------------------------------

    async def create_transfer(
        self,
        *,
        transfer_id: str,
        amount_paise: int,
        beneficiary_id: str,
        mode: str = "banktransfer",
        remarks: str | None = None,
        fundsource_id: str | None = None,
    ) -> Transfer:
        """Ask Cashfree to pay `amount_paise` to a beneficiary under our `transfer_id`. The
        answer is usually RECEIVED; the end comes by webhook or `get_transfer`. However often
        this is called with one `transfer_id`, at most one transfer exists (module doc)."""
        body: dict[str, Any] = {
            "transfer_id": transfer_id,
            "transfer_amount": to_rupees(amount_paise),
            "transfer_currency": "INR",
            "transfer_mode": mode,
            "beneficiary_details": {"beneficiary_id": beneficiary_id},
        }
        if remarks:
            body["transfer_remarks"] = remarks
        if fundsource_id:
            body["fundsource_id"] = fundsource_id
        attempt = 0
        while True:
            attempt += 1
            try:
                created = await self._payout.call(
                    "payout_create_transfer", "POST", "/transfers", Transfer, body=body, retries=0
                )
                return _ours(created, transfer_id, amount_paise, beneficiary_id)
            except CashfreeConflict as exc:
                if exc.code != TRANSFER_EXISTS:
                    raise
                # Ours from an earlier attempt (or a worker before us): that is the answer.
                existing = await self.get_transfer(transfer_id=transfer_id)
                log.info("cashfree.payout.transfer_exists", transfer_id=transfer_id)
                return _ours(existing, transfer_id, amount_paise, beneficiary_id, exc)
            except CashfreeError as exc:
                if not exc.retryable or attempt > self.max_retries:
                    raise
                # The create may have gone through: ask before sending it again (§13.3).
                try:
                    existing = await self.get_transfer(transfer_id=transfer_id)
                except CashfreeNotFound:
                    pass
                else:
                    return _ours(existing, transfer_id, amount_paise, beneficiary_id)
                wait = self._payout.wait(attempt, exc)
                if wait is None:
                    raise
                log.warning(
                    "cashfree.payout.create_retry",
                    transfer_id=transfer_id,
                    attempt=attempt,
                    wait_s=round(wait, 3),
                    error=redact(str(exc)),
                )
                await asyncio.sleep(wait)

    async def get_transfer(
        self, *, transfer_id: str | None = None, cf_transfer_id: str | None = None
    ) -> Transfer:
        """The transfer by our id or Cashfree's (one of them)."""
        params: dict[str, str]
        if transfer_id is not None and cf_transfer_id is None:
            params = {"transfer_id": transfer_id}
        elif cf_transfer_id is not None and transfer_id is None:
            params = {"cf_transfer_id": cf_transfer_id}
        else:
            raise ValueError("give exactly one of transfer_id and cf_transfer_id")
        return await self._payout.call(
            "payout_get_transfer", "GET", "/transfers", Transfer, params=params
        )


def _ours(
    transfer: Transfer,
    transfer_id: str,
    amount_paise: int,
    beneficiary_id: str,
    conflict: CashfreeConflict | None = None,
) -> Transfer:
    """The transfer, once it is shown to be the one asked for: our id, amount, beneficiary.
    Anything else is our id reused for another payment, which must stop, never be paid."""
    same = (
        transfer.transfer_id == transfer_id
        and transfer.transfer_amount_paise == amount_paise
        and transfer.beneficiary_id in (beneficiary_id, None)
    )
    if same:
        return transfer
    if conflict is not None:
        raise conflict
    raise CashfreeConflict(
        f"payout_create_transfer: transfer {transfer_id} exists with other details",
        status=409,
        code=TRANSFER_EXISTS,
    )
