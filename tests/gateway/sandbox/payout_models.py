"""Strict models of the Payouts V2 and verification wire shapes (cashfree.md §6.2, §13), for
checking the sandbox; like `strict_models.py`, they refuse anything the document does not show.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from tests.gateway.sandbox.strict_models import Amount, CfId, Strict

UtcTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]
# Payouts webhooks' event_time: IST without an offset (cashfree.md §13.1).
LocalTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")]

TransferStatus = Literal["RECEIVED", "PENDING", "SUCCESS", "FAILED", "REJECTED", "REVERSED"]


class ErrorV2(Strict):
    type: Literal["invalid_request_error", "authentication_error", "rate_limit_error", "api_error"]
    code: str
    message: str


class InstrumentDetails(Strict):
    bank_account_number: str | None
    bank_ifsc: str | None
    vpa: str | None


class ContactDetails(Strict):
    beneficiary_email: str | None = None
    beneficiary_phone: str | None = None
    beneficiary_country_code: str | None = None
    beneficiary_address: str | None = None
    beneficiary_city: str | None = None
    beneficiary_state: str | None = None
    beneficiary_postal_code: str | None = None


class Beneficiary(Strict):
    beneficiary_id: str
    beneficiary_name: str
    beneficiary_instrument_details: InstrumentDetails
    beneficiary_contact_details: ContactDetails
    beneficiary_status: Literal[
        "VERIFIED", "INVALID", "INITIATED", "CANCELLED", "FAILED", "DELETED"
    ]
    added_on: UtcTime


class TransferBeneficiary(Strict):
    beneficiary_id: str | None
    beneficiary_instrument_details: InstrumentDetails


class TransferData(Strict):
    transfer_id: str
    cf_transfer_id: CfId
    status: TransferStatus
    status_code: str
    status_description: str
    beneficiary_details: TransferBeneficiary
    transfer_amount: Amount
    transfer_service_charge: Amount | None
    transfer_service_tax: Amount | None
    transfer_mode: Literal["BANK", "IMPS", "NEFT", "RTGS", "UPI"]
    transfer_utr: str | None
    fundsource_id: str


class Transfer(TransferData):
    added_on: UtcTime
    updated_on: UtcTime


class TransferWebhook(Strict):
    data: TransferData
    event_time: LocalTime
    type: Literal[
        "TRANSFER_SUCCESS",
        "TRANSFER_ACKNOWLEDGED",
        "TRANSFER_FAILED",
        "TRANSFER_REVERSED",
        "TRANSFER_REJECTED",
    ]


class IfscDetails(Strict):
    bank: str
    ifsc: str
    branch: str
    city: str
    state: str


class Verification(Strict):
    reference_id: int
    name_at_bank: str | None
    bank_name: str | None
    utr: str | None
    city: str | None
    branch: str | None
    micr: int | None
    name_match_score: Annotated[str, StringConstraints(pattern=r"^\d{1,3}\.\d\d$")] | None
    name_match_result: (
        Literal[
            "DIRECT_MATCH",
            "GOOD_PARTIAL_MATCH",
            "MODERATE_PARTIAL_MATCH",
            "POOR_PARTIAL_MATCH",
            "NO_MATCH",
        ]
        | None
    )
    account_status: Literal["VALID", "INVALID"]
    account_status_code: Literal[
        "ACCOUNT_IS_VALID", "INVALID_BANK_ACCOUNT", "INVALID_IFSC", "ACCOUNT_BLOCKED", "NRE_ACCOUNT"
    ]
    ifsc_details: IfscDetails | None
