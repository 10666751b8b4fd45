"""Payouts V2 and verification bodies, in the shapes of cashfree.md §6.2, §13.2 and §13.4.

Payouts writes its times in UTC with a `Z` (`added_on`), its webhooks' `event_time` in IST
without an offset; amounts are `Money` (two decimals), ids strings, as on the PG side.
"""

from __future__ import annotations

from typing import Any

from commdesk_billing.gateway.sandbox.payouts.store import (
    Beneficiary,
    Instrument,
    Transfer,
    Verification,
)
from commdesk_billing.gateway.sandbox.wire import Money, utc_text

# Our own words for each status_code the sandbox sends (Cashfree's texts are not copied).
DESCRIPTIONS = {
    "RECEIVED": "Transfer received; its final state comes by webhook or by the status API.",
    "SENT_TO_BANK": "Transfer sent to the bank and awaiting its answer.",
    "SENT_TO_BENEFICIARY": "Amount debited and sent to the beneficiary's bank.",
    "COMPLETED": "The beneficiary's bank confirmed the credit.",
    "BENE_BANK_DECLINED": "The beneficiary's bank declined the transfer; try again later.",
    "BANK_GATEWAY_ERROR": "The bank's gateway failed; try again later.",
    "REINITIALIZE_TRANSFER_LATER": "The bank could not take the transfer now; try again later.",
    "NPCI_UNAVAILABLE": "NPCI is unavailable; try again later.",
    "BENEFICIARY_BANK_OFFLINE": "The beneficiary's bank is offline; try again later.",
    "IMPS_MODE_FAIL": "The beneficiary's account does not take IMPS transfers.",
    "INSUFFICIENT_BALANCE": "The payout account's balance is too low for this transfer.",
    "INVALID_BENE_ACCOUNT_OR_IFSC": "The account number or IFSC is not valid.",
    "INVALID_ACCOUNT_FAIL": "The beneficiary's account is not valid.",
    "INVALID_IFSC_FAIL": "The IFSC is not valid.",
    "INVALID_BENE_VPA": "The beneficiary's UPI id is not valid.",
    "ACCOUNT_BLOCKED": "The beneficiary's account is blocked or frozen.",
    "NRE_ACCOUNT_FAIL": "The beneficiary's account is an NRE account.",
    "BENE_NAME_DIFFERS": "The name on the beneficiary's account differs.",
    "BENE_BLACKLISTED": "The beneficiary is blacklisted.",
    "SUSPECTED_TRANSFER": "The transfer was held as suspicious.",
    "VELOCITY_CHECK_FAILED": "Too many transfers to this beneficiary in a short time.",
    "INVALID_MODE_FOR_PYID": "This transfer mode does not suit the beneficiary's instrument.",
    "DISABLED_MODE": "This transfer mode is disabled for the account.",
    "DEST_LIMIT_REACHED": "The beneficiary's bank limit for this mode was reached.",
    "INVALID_AMOUNT_FAIL": "The amount is not allowed for this transfer mode.",
}
# Cashfree echoes the default mode as "BANK" (the docs' samples); the others upper-cased.
MODE_NAMES = {"banktransfer": "BANK"}
# The sandbox's fee once a transfer succeeds: Rs 1.00 plus 18 % GST (the docs' sample).
SERVICE_CHARGE_PAISE = 100
SERVICE_TAX_PAISE = 18


def _instrument(instrument: Instrument) -> dict[str, Any]:
    return {
        "bank_account_number": instrument.bank_account_number,
        "bank_ifsc": instrument.bank_ifsc,
        "vpa": instrument.vpa,
    }


def beneficiary_entity(bene: Beneficiary, status: str | None = None) -> dict[str, Any]:
    return {
        "beneficiary_id": bene.beneficiary_id,
        "beneficiary_name": bene.name,
        "beneficiary_instrument_details": _instrument(bene.instrument),
        "beneficiary_contact_details": bene.contact,
        "beneficiary_status": status or bene.status,
        "added_on": utc_text(bene.added_on),
    }


def _transfer_data(transfer: Transfer) -> dict[str, Any]:
    charged = transfer.status in ("SUCCESS", "REVERSED")
    return {
        "transfer_id": transfer.transfer_id,
        "cf_transfer_id": transfer.cf_transfer_id,
        "status": transfer.status,
        "status_code": transfer.status_code,
        "status_description": DESCRIPTIONS.get(transfer.status_code, transfer.status_code),
        "beneficiary_details": {
            "beneficiary_id": transfer.beneficiary_id,
            "beneficiary_instrument_details": _instrument(transfer.instrument),
        },
        "transfer_amount": Money(transfer.amount_paise),
        "transfer_service_charge": Money(SERVICE_CHARGE_PAISE) if charged else None,
        "transfer_service_tax": Money(SERVICE_TAX_PAISE) if charged else None,
        "transfer_mode": MODE_NAMES.get(transfer.mode, transfer.mode.upper()),
        "transfer_utr": transfer.utr,
        "fundsource_id": transfer.fundsource_id,
    }


def transfer_entity(transfer: Transfer) -> dict[str, Any]:
    updated = transfer.updated_on or transfer.added_on
    return _transfer_data(transfer) | {
        "added_on": utc_text(transfer.added_on),
        "updated_on": utc_text(updated),
    }


def transfer_webhook(transfer: Transfer, event_type: str, event_time: str) -> dict[str, Any]:
    """TRANSFER_* webhook: §13.2's envelope and data (no added_on/updated_on, as sampled)."""
    return {"data": _transfer_data(transfer), "event_time": event_time, "type": event_type}


def verification_entity(verification: Verification) -> dict[str, Any]:
    return {"reference_id": verification.reference_id} | verification.answer
