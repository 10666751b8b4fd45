"""A full and a minimal payload of every event the catalog takes (the minimal one carries
only what the event must; the renderer says something sensible for the rest)."""

from __future__ import annotations

from typing import Any

U = "7d0c7b1e-6b1a-4c43-9a65-1f8e7d9c0a11"
P = "0a8a4c8e-3b61-4f8b-8a9f-5b2f8e4d6c21"


def full(user_id: str = U) -> dict[str, dict[str, Any]]:
    return {
        "payment.credited": {
            "payment_id": P,
            "order_id": "cdb_ord_1",
            "user_id": user_id,
            "wallet_id": "w1",
            "amount_paise": 35400,
            "taxable_paise": 30000,
            "gst_amount_paise": 5400,
            "credits": 3200,
            "pack_code": "pack_300",
            "kind": "credits",
        },
        "refund.succeeded": {
            "refund_id": "r-1",
            "payment_id": P,
            "user_id": user_id,
            "amount_paise": 123456789,
            "credits": 1500,
        },
        "settlement.paid": {
            "settlement_id": "s-1",
            "payee_id": P,
            "gross_paise": 100000,
            "net_paise": 98000,
            "utr": "UTR123",
        },
        "settlement.failed": {
            "settlement_id": "s-2",
            "payee_id": P,
            "gross_paise": 100000,
            "net_paise": 98000,
            "code": "INVALID_ACCOUNT",
            "reason": "the bank says the account is closed",
        },
        "settlement.reversed": {
            "settlement_id": "s-3",
            "payee_id": P,
            "gross_paise": 100000,
            "net_paise": 98000,
            "code": "REVERSED",
            "reason": "returned by the beneficiary bank",
        },
        "wallet.low_balance": {
            "wallet_id": "w1",
            "user_id": user_id,
            "available_credits": 150,
            "threshold": 200,
        },
        "auto_recharge.checkout_opened": {
            "recharge_id": "rc-1",
            "wallet_id": "w1",
            "user_id": user_id,
            "payment_id": P,
            "checkout_url": "https://pay.example.test/checkout?s=abc&x=1",
            "amount_paise": 30000,
            "credits": 3000,
        },
        "auto_recharge.notified": {
            "recharge_id": "rc-2",
            "wallet_id": "w1",
            "user_id": user_id,
            "amount_paise": 30000,
            "credits": 3000,
            "debit_on": "2026-12-09",
        },
        "auto_recharge.succeeded": {
            "recharge_id": "rc-3",
            "wallet_id": "w1",
            "user_id": user_id,
            "amount_paise": 30000,
            "credits": 3000,
        },
        "auto_recharge.failed": {
            "recharge_id": "rc-4",
            "wallet_id": "w1",
            "user_id": user_id,
            "amount_paise": 30000,
            "reason": "insufficient funds in the payer's account",
            "retry_at": "2026-12-08T04:30:00+00:00",
        },
        "auto_recharge.disabled": {
            "wallet_id": "w1",
            "user_id": user_id,
            "reason": "3 consecutive failures",
        },
        "mandate.status_changed": {
            "mandate_id": "m-1",
            "user_id": user_id,
            "status": "ACTIVE",
            "max_amount_paise": 500000,
        },
        "subscription.renewed": {
            "subscription_id": "sub-1",
            "user_id": user_id,
            "plan_name": "Community Pro",
            "period_start": "2026-12-01",
            "period_end": "2027-01-01",
            "price_credits": 2500,
        },
        "subscription.renewal_failed": {
            "subscription_id": "sub-1",
            "user_id": user_id,
            "plan_name": "Community Pro",
            "attempt": 2,
            "next_retry_at": "2026-12-02T00:00:00Z",
            "grace_until": "2026-12-08T00:00:00+05:30",
        },
        "subscription.cancelled": {
            "subscription_id": "sub-1",
            "user_id": user_id,
            "plan_name": "Community Pro",
            "ends_at": "2027-01-01T00:00:00+05:30",
        },
    }


def minimal(user_id: str = U) -> dict[str, dict[str, Any]]:
    return {
        "payment.credited": {"payment_id": P, "user_id": user_id, "amount_paise": 100},
        "refund.succeeded": {"refund_id": "r-1", "user_id": user_id, "amount_paise": 1},
        "settlement.paid": {"settlement_id": "s-1", "payee_id": P, "net_paise": 10000},
        "settlement.failed": {"settlement_id": "s-2", "payee_id": P, "net_paise": 10000},
        "settlement.reversed": {"settlement_id": "s-3", "payee_id": P, "net_paise": 10000},
        "wallet.low_balance": {"wallet_id": "w1", "user_id": user_id, "available_credits": 0},
        "auto_recharge.checkout_opened": {
            "recharge_id": "rc-1",
            "wallet_id": "w1",
            "user_id": user_id,
            "checkout_url": "https://pay.example.test/c",
            "amount_paise": 30000,
        },
        "auto_recharge.notified": {
            "recharge_id": "rc-2",
            "wallet_id": "w1",
            "user_id": user_id,
            "amount_paise": 30000,
        },
        "auto_recharge.succeeded": {
            "recharge_id": "rc-3",
            "wallet_id": "w1",
            "user_id": user_id,
            "amount_paise": 30000,
        },
        "auto_recharge.failed": {"recharge_id": "rc-4", "wallet_id": "w1", "user_id": user_id},
        "auto_recharge.disabled": {"wallet_id": "w1", "user_id": user_id},
        "mandate.status_changed": {"mandate_id": "m-1", "user_id": user_id, "status": "REVOKED"},
        "subscription.renewed": {"subscription_id": "sub-1", "user_id": user_id},
        "subscription.renewal_failed": {"subscription_id": "sub-1", "user_id": user_id},
        "subscription.cancelled": {"subscription_id": "sub-1", "user_id": user_id},
    }
