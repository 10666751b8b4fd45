"""Tolerant models of what Cashfree Payouts V2 and bank-account verification send us.

The same rules as `models.py` (unknown fields ignored, statuses plain upper-case strings, ids
as text, amounts exact paise, unstorable text refused, odd times None), plus one of their own:
account numbers and VPAs never appear in a model's repr, so a logged model cannot leak one;
`masked` gives the last four digits where a log or a screen needs to name the account.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commdesk_billing.gateway.models import Paise, Status, TextId, _Tolerant
from commdesk_billing.gateway.payout_codes import Outcome, outcome
from commdesk_billing.security.timestamps import CashfreeTime


def mask(number: str | None) -> str | None:
    """`XXXX1191`: the last four characters of an account number, the rest hidden."""
    if number is None:
        return None
    return "XXXX" + number[-4:] if len(number) > 4 else "XXXX"


class Instrument(_Tolerant):
    bank_account_number: TextId | None = Field(default=None, repr=False)
    bank_ifsc: str | None = None
    vpa: str | None = Field(default=None, repr=False)

    @property
    def masked(self) -> str | None:
        return mask(self.bank_account_number)


class Beneficiary(_Tolerant):
    beneficiary_id: TextId
    beneficiary_name: str | None = None
    beneficiary_instrument_details: Instrument | None = None
    beneficiary_contact_details: dict[str, Any] | None = Field(default=None, repr=False)
    beneficiary_status: Status | None = None
    added_on: CashfreeTime = None


class TransferBeneficiary(_Tolerant):
    beneficiary_id: TextId | None = None
    beneficiary_instrument_details: Instrument | None = None


class Transfer(_Tolerant):
    """A transfer as the REST API or a TRANSFER_* webhook's `data` describes it."""

    transfer_id: TextId
    cf_transfer_id: TextId | None = None
    status: Status
    status_code: Status | None = None
    status_description: str | None = None
    beneficiary_details: TransferBeneficiary | None = None
    transfer_amount_paise: Paise | None = Field(default=None, alias="transfer_amount")
    transfer_service_charge_paise: Paise | None = Field(
        default=None, alias="transfer_service_charge"
    )
    transfer_service_tax_paise: Paise | None = Field(default=None, alias="transfer_service_tax")
    transfer_mode: str | None = None
    transfer_utr: TextId | None = None
    fundsource_id: str | None = None
    added_on: CashfreeTime = None
    updated_on: CashfreeTime = None

    @property
    def outcome(self) -> Outcome:
        return outcome(self.status, self.status_code)

    @property
    def beneficiary_id(self) -> str | None:
        return self.beneficiary_details.beneficiary_id if self.beneficiary_details else None


class BankAccountVerification(_Tolerant):
    reference_id: TextId
    name_at_bank: str | None = None
    bank_name: str | None = None
    utr: TextId | None = None
    city: str | None = None
    branch: str | None = None
    micr: TextId | None = None
    # "90.00" on the wire; kept as Cashfree's text (a score, not money).
    name_match_score: TextId | None = None
    name_match_result: Status | None = None
    account_status: Status
    account_status_code: Status | None = None

    @property
    def valid(self) -> bool:
        return self.account_status == "VALID"


class TransferWebhook(_Tolerant):
    """A Payouts V2 webhook: `TRANSFER_SUCCESS`, `TRANSFER_ACKNOWLEDGED`, `TRANSFER_FAILED`,
    `TRANSFER_REVERSED`, `TRANSFER_REJECTED` (cashfree.md §13.2)."""

    type: Status
    # Without an offset on the wire: read as Indian time (security/timestamps.py).
    event_time: CashfreeTime = None
    data: Transfer
