"""Sponsorship refunds at the edge of their arithmetic: a refund whose share of the fee and
GST rounds to nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.invoices import invariants as invoice_invariants
from commdesk_billing.modules.invoices import repository as invoice_repo
from commdesk_billing.modules.invoices import service as invoices
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds import invariants as refund_invariants
from commdesk_billing.modules.sponsorships import invariants
from tests.harness.stack import Stack
from tests.modules.sponsorships.conftest import Put, bearer, finance_token, funded, sponsor_token


async def test_a_refund_returning_none_of_the_fee_issues_no_credit_note(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    milestones = [
        {"title": "Tournament", "amount_paise": 99_995},
        {"title": "Stamps", "amount_paise": 5},
    ]
    s = await funded(stack, tok, cid, milestones=milestones)
    r = await stack.api.post(
        f"/v1/payments/{s['payment']['id']}/refunds",
        json={"reason": "stamps not needed", "milestones": [2]},
        headers=bearer(finance_token(stack)),
    )
    assert r.status_code == 202, r.text
    # 5 paise of 100 000 carry 0.25 paise of the 5 000 fee and 0.02 of each GST part: none.
    got = r.json()
    assert (got["amount_paise"], got["passthrough_paise"], got["taxable_paise"]) == (5, 5, 0)
    assert got["cgst_paise"] + got["sgst_paise"] + got["igst_paise"] == 0
    await stack.wait_refund(got["id"], {"SUCCESS"})
    refund_id = uuid.UUID(got["id"])

    # Nothing of our supply was refunded: there is nothing to credit, and issuing says so
    # instead of failing on a zero-value document (the worker retried it for ever).
    async def issue(conn: AsyncConnection) -> Invoice | None:
        return await invoices.issue_credit_note(conn, stack.settings, refund_id)

    assert await in_transaction(stack.engine, issue) is None
    assert (
        await stack.scalar("SELECT count(*) FROM invoices WHERE refund_id = :r", r=refund_id) == 0
    )

    # The documents' sweep does not announce it again every period either.
    async def missing(conn: AsyncConnection) -> list[Any]:
        later = datetime.now(UTC) + timedelta(days=1)
        return await invoice_repo.undocumented(conn, older_than=later, limit=10_000)

    assert refund_id not in [m[2] for m in await in_transaction(stack.engine, missing)]
    report = await verify_ledger(
        stack.engine,
        checks=[*invariants.CHECKS, *refund_invariants.CHECKS, *invoice_invariants.CHECKS],
    )
    assert report.ok, [str(f) for f in report.findings]
