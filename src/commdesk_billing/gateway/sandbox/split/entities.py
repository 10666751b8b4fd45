"""Easy Split bodies: vendors, balances, split recon and the vendor settlement webhook
(cashfree.md §6.1, §14.5). Amounts are `Money`; times IST.

Shapes drift between Cashfree's docs and its SDK (§6.1): create and update answer in the docs'
shape (`bank`, `schedule_option`, `kyc_details` objects), the fetch answers `VendorEntity` as
the SDK declares it (`bank` and `schedule_option` lists). Our client reads both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from commdesk_billing.gateway.sandbox.split.store import Split, Vendor, VendorSettlement
from commdesk_billing.gateway.sandbox.wire import IST, Money, ist_text

SCHEDULES = {1: "T+1 settlement at 11:00 AM", 8: "Instant settlement", 9: "Instant settlement"}


def _schedule(vendor: Vendor) -> dict[str, Any]:
    return {
        "settlement_schedule_message": SCHEDULES.get(
            vendor.schedule_option, f"settlement cycle {vendor.schedule_option}"
        ),
        "schedule_id": vendor.schedule_option,
        "merchant_default": vendor.schedule_option == 1,
    }


def vendor_created(vendor: Vendor) -> dict[str, Any]:
    """`CreateVendorResponse` / `UpdateVendorResponse` in the docs' shape."""
    return {
        "email": vendor.email,
        "status": vendor.status,
        "bank": dict(vendor.bank) if vendor.bank else None,
        "upi": dict(vendor.upi) if vendor.upi else None,
        "phone": vendor.phone,
        "name": vendor.name,
        "vendor_id": vendor.vendor_id,
        "schedule_option": _schedule(vendor),
        "kyc_details": dict(vendor.kyc),
        "dashboard_access": vendor.dashboard_access,
        "bank_details": None,
    }


def vendor_entity(vendor: Vendor) -> dict[str, Any]:
    """`VendorEntity` as SDK6 declares it (lists for `bank` and `schedule_option`)."""
    return {
        "email": vendor.email,
        "status": vendor.status,
        "phone": vendor.phone,
        "name": vendor.name,
        "vendor_id": vendor.vendor_id,
        "added_on": ist_text(vendor.added_on),
        "updated_on": ist_text(vendor.updated_on),
        "bank": [dict(vendor.bank)] if vendor.bank else [],
        "upi": dict(vendor.upi) if vendor.upi else None,
        "schedule_option": [_schedule(vendor)],
        "vendor_type": "ADVANCED",
        "account_type": vendor.kyc.get("account_type"),
        "business_type": vendor.kyc.get("business_type"),
        "remarks": vendor.remarks,
        "related_docs": [],
    }


def split_entity(split: Split) -> dict[str, Any]:
    """A `VendorSplit` as an order echoes it."""
    return {
        "vendor_id": split.vendor_id,
        "amount": Money(split.amount_paise) if split.amount_paise is not None else None,
        "percentage": split.percentage,
        "tags": split.tags,
    }


def balance_entity(merchant_id: str, vendor_id: str, merchant: int, vendor: int) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "vendor_id": vendor_id,
        "merchant_unsettled": Money(merchant),
        "vendor_unsettled": Money(vendor),
    }


def _date(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%d")


def mask(number: str) -> str:
    """`XXXXXXX1234` as the webhook sample writes an account number."""
    return "X" * max(len(number) - 4, 0) + number[-4:]


def vendor_settlement_webhook(
    settlement: VendorSettlement, vendor: Vendor, orders: int, event_type: str, event_time: str
) -> dict[str, Any]:
    """VENDOR_SETTLEMENT_* (cashfree.md §14.5): `settled_on` is the string "null" until it is
    settled; `settlement_amount = vendor_transaction_amount + adjustment`."""
    settled = settlement.status == "SUCCESS" or settlement.status == "REVERSED"
    bank = vendor.bank or {}
    return {
        "data": {
            "settlement": {
                "settlement_id": settlement.settlement_id,
                "status": settlement.status,
                "utr": settlement.utr,
                "payment_amount": None,
                "settlement_initiated_on": ist_text(settlement.initiated_on),
                "settlement_type": None,
                "settled_on": ist_text(settlement.settled_on) if settlement.settled_on else "null",
                "reason": settlement.reason,
                "adjustment": Money(settlement.adjustment_paise),
                "settlement_amount": Money(settlement.amount_paise),
                "service_charge": Money(0),
                "service_tax": Money(0),
                "amount_settled": Money(settlement.amount_paise) if settled else None,
                "payment_from": _date(settlement.payment_from),
                "payment_till": _date(settlement.payment_till),
                "vendor_id": vendor.vendor_id,
                "vendor_transaction_amount": Money(settlement.vendor_transaction_paise),
                "account_mode": settlement.account_mode,
                "settled_orders_count": orders,
                "account_number": mask(bank["account_number"]) if bank else None,
                "ifsc": bank.get("ifsc"),
                "vpa": (vendor.upi or {}).get("vpa") if not bank else None,
            }
        },
        "event_time": event_time,
        "type": event_type,
    }
