"""Helpers of the mandate refund tests: a stack of the module's own (its sandbox's clock is
moved by days), a member's credit purchase charged on an approved UPI AutoPay mandate and
credited after the debit, and what Cashfree Subscriptions (the sandbox) holds."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from tests.harness.stack import Stack
from tests.modules.autorecharge.mandate_helpers import (
    active_mandate,
    advance_to,
    debit_time,
    member,
    sandbox_now,
    until,
)

__all__ = ["credited_on_mandate", "inr_legs", "lots", "sandbox_refund", "until"]


async def credited_on_mandate(stack: Stack, pack_code: str = "pack_300") -> tuple[str, Any]:
    """A member's token and their purchase of `pack_code`, charged on their mandate (as
    auto-recharge does), debited by the sandbox once its clock passed the notice, CREDITED."""
    tok, _ = await member(stack, 0)
    m = await active_mandate(stack, tok)
    async with subscriptions_client(stack.settings) as client:
        payment = await mandates.charge(
            stack.engine,
            client,
            stack.settings,
            uuid.UUID(m["id"]),
            key=f"recharge-{uuid.uuid4().hex}",
            pack_code=pack_code,
            actor="auto-recharge",
            schedule=earliest_schedule_date(await sandbox_now(stack)),
        )
    pid = str(payment.id)

    async def notified() -> bool:
        return (await stack.payment(tok, pid))["pdn_at"] is not None

    await until(notified, True)
    await advance_to(stack, debit_time(await stack.payment(tok, pid)))
    done = await stack.wait_status(tok, pid, {"CREDITED"}, timeout_s=30)
    assert done["channel"] == "mandate"
    return tok, done


async def sandbox_refund(stack: Stack, subscription_id: str, refund_ref: str) -> dict[str, Any]:
    r = await stack.sandbox.get(f"/pg/subscriptions/{subscription_id}/refunds/{refund_ref}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def inr_legs(stack: Stack, refund_id: str) -> dict[str, int]:
    """The INR legs the refund posted, by account code."""
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT a.code, sum(e.amount) FROM ledger_entries e
                  JOIN ledger_journals j ON j.id = e.journal_id
                  JOIN ledger_accounts a ON a.id = e.account_id
                 WHERE j.idempotency_key LIKE :k GROUP BY a.code"""),
                {"k": f"refund:{refund_id}:%"},
            )
        ).all()
    return {code: int(amount) for code, amount in rows}


async def lots(stack: Stack, payment_id: str) -> dict[str, tuple[int, int, int]]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT source, credits_remaining, credits_refunded, credits_reserved
                  FROM credit_lots WHERE source_ref = :p"""),
                {"p": payment_id},
            )
        ).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
