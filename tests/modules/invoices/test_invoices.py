"""Tax invoices and credit notes end to end: issued by the invoice.generate consumer, drawn
as PDFs into document storage, read back over the API and parsed with pypdf."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import text

from commdesk_billing.modules.invoices.words import amount_in_words, rupees
from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import FORBIDDEN, NOT_FOUND, REFUND_INVOICE_ALLOW, REFUND_INVOICE_REFUSE
from tests.authz import STACK_CALLERS as CALLERS
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def _documents(
    stack: Stack, payment_id: str, kinds: set[str], timeout_s: float = 20
) -> dict[str, dict[str, Any]]:
    """The payment's documents by kind, once each wanted kind exists with its PDF stored."""
    tok = stack.token("finance-1", Role.finance_admin)
    deadline = time.monotonic() + timeout_s
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        r = await stack.api.get(f"/v1/invoices?payment_id={payment_id}", headers=_auth(tok))
        assert r.status_code == 200, r.text
        found = {d["kind"]: d for d in r.json()["data"]}
        if kinds <= found.keys() and all(found[k]["pdf_available"] for k in kinds):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"documents {kinds} not ready: {found}")


def _pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


async def test_a_purchase_gets_a_tax_invoice_and_a_refund_a_credit_note(stack: Stack) -> None:
    tok, paid = await stack.credited()
    docs = await _documents(stack, paid["id"], {"tax_invoice"})
    invoice = docs["tax_invoice"]
    assert re.fullmatch(r"CDB/\d{4}/\d{6}", invoice["number"])
    assert (invoice["taxable_paise"], invoice["cgst_paise"], invoice["sgst_paise"]) == (
        25424,
        2288,
        2288,
    )
    assert invoice["total_paise"] == 30000 and invoice["igst_paise"] == 0
    assert invoice["place_of_supply"] == "29"
    assert invoice["amount_in_words"] == "Rupees Three Hundred Only"
    # The buyer sees it; the PDF shows what an auditor looks for.
    mine = await stack.api.get("/v1/invoices", headers=_auth(tok))
    assert [d["id"] for d in mine.json()["data"]] == [invoice["id"]]
    pdf = await stack.api.get(f"/v1/invoices/{invoice['id']}/pdf", headers=_auth(tok))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    shown_text = _pdf_text(pdf.content)
    for shown in (
        invoice["number"],
        stack.settings.seller_gstin,
        "Tax Invoice",
        rupees(2288),
        rupees(25424),
        rupees(30000),
        "Three Hundred",
        paid["order_id"],
    ):
        assert shown in shown_text, shown
    assert "CGST" in shown_text and "SGST" in shown_text

    r = await stack.refund(paid["id"], amount_paise=10000)
    assert r.status_code == 202
    await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    docs = await _documents(stack, paid["id"], {"tax_invoice", "credit_note"})
    note = docs["credit_note"]
    assert re.fullmatch(r"CDC/\d{4}/\d{6}", note["number"])
    assert note["refund_id"] == r.json()["id"]
    assert note["original_invoice_id"] == invoice["id"]
    assert note["total_paise"] == 10000
    assert note["taxable_paise"] + note["cgst_paise"] + note["sgst_paise"] == 10000
    shown_text = _pdf_text(
        (await stack.api.get(f"/v1/invoices/{note['id']}/pdf", headers=_auth(tok))).content
    )
    for shown in (note["number"], invoice["number"], "Credit Note", rupees(10000)):
        assert shown in shown_text, shown
    assert amount_in_words(10000) == note["amount_in_words"]
    # The buyer's statement of billing facts, in order.
    kinds = [
        r[0]
        for r in await _all(
            stack,
            "SELECT event_type FROM billing_events WHERE payment_id = :p ORDER BY id",
            p=paid["id"],
        )
    ]
    # (The invoice was issued before the refund was asked for, the credit note after it
    # succeeded: the test waited for each.)
    assert kinds == [
        "payment.created",
        "payment.active",
        "payment.paid",
        "payment.credited",
        "tax_invoice.issued",
        "refund.requested",
        "refund.succeeded",
        "credit_note.issued",
    ]


async def test_an_inter_state_buyer_is_charged_igst(stack: Stack) -> None:
    tok = stack.token()
    r = await stack.api.post(
        "/v1/payments/orders",
        json={"pack_code": "pack_500", "customer_phone": "9876543210", "buyer_state": "27"},
        headers={**_auth(tok), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    await stack.pay(r.json())
    await stack.wait_status(tok, r.json()["id"], {"CREDITED"})
    invoice = (await _documents(stack, r.json()["id"], {"tax_invoice"}))["tax_invoice"]
    assert (invoice["cgst_paise"], invoice["sgst_paise"], invoice["igst_paise"]) == (0, 0, 7627)
    assert invoice["place_of_supply"] == "27"
    shown_text = _pdf_text(
        (await stack.api.get(f"/v1/invoices/{invoice['id']}/pdf", headers=_auth(tok))).content
    )
    assert "IGST" in shown_text and rupees(7627) in shown_text and "Maharashtra" in shown_text


async def test_exclusive_pricing_adds_the_tax_on_top(stack: Stack, variant: Any) -> None:
    exclusive = await variant(gst_mode="exclusive")
    tok = exclusive.token()
    order = await exclusive.buy(tok, pack_code="pack_150")
    assert order["amount_paise"] == 17700
    await exclusive.pay(order)
    await exclusive.wait_status(tok, order["id"], {"CREDITED"})
    invoice = (await _documents(stack, order["id"], {"tax_invoice"}))["tax_invoice"]
    assert (invoice["taxable_paise"], invoice["cgst_paise"], invoice["sgst_paise"]) == (
        15000,
        1350,
        1350,
    )
    assert invoice["document"]["gst_mode"] == "exclusive"
    # A full refund returns exactly what was paid, split exactly as invoiced.
    r = await stack.refund(order["id"])
    assert r.status_code == 202 and r.json()["amount_paise"] == 17700
    done = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    assert (done["taxable_paise"], done["cgst_paise"], done["sgst_paise"]) == (15000, 1350, 1350)


async def _all(stack: Stack, sql: str, **params: Any) -> list[Any]:
    async with stack.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


# --- who may call what ------------------------------------------------------------------

OK = {"GET": 200, "POST": 202}
PROBLEM_CODE = {FORBIDDEN: "forbidden", NOT_FOUND: "not_found"}


def test_the_role_matrix_answers_every_caller_once() -> None:
    for route, allowed in REFUND_INVOICE_ALLOW.items():
        refused = REFUND_INVOICE_REFUSE[route].keys()
        assert not allowed & refused, route
        assert allowed | refused == set(CALLERS) - {"anonymous"}, route


@pytest.fixture(scope="module")
async def refunded(shared_stack: Stack) -> dict[str, Any]:
    """One purchase with a refund and both documents, read by every caller in the matrix."""
    owner = f"owner-{uuid.uuid4().hex}"
    tok = shared_stack.token(owner)
    order = await shared_stack.buy(tok)
    await shared_stack.pay(order)
    await shared_stack.wait_status(tok, order["id"], {"CREDITED"})
    r = await shared_stack.refund(order["id"], amount_paise=1000)
    await shared_stack.wait_refund(r.json()["id"], {"SUCCESS"})
    docs = await _documents(shared_stack, order["id"], {"tax_invoice", "credit_note"})
    return {"owner": owner, "payment": order, "refund": r.json(), "invoice": docs["tax_invoice"]}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(REFUND_INVOICE_ALLOW))
async def test_refund_and_invoice_routes_by_role(
    stack: Stack, refunded: dict[str, Any], route: str, caller: str
) -> None:
    subs = {
        "owner": (refunded["owner"], Role.member, []),
        "other_member": (None, Role.member, []),
        "finance_admin": (None, Role.finance_admin, []),
        "support": (None, Role.support, []),
        "auditor": (None, Role.auditor, []),
        "service": ("svc", Role.service, [Scope.wallets_read.value, Scope.wallets_debit.value]),
    }
    headers: dict[str, str] = {"Idempotency-Key": uuid.uuid4().hex}
    if caller != "anonymous":
        sub, role, scopes = subs[caller]
        tok = issue_token(
            stack.settings, sub=sub or f"u-{uuid.uuid4().hex}", role=role, scopes=scopes
        )
        headers["Authorization"] = f"Bearer {tok}"
    method, path = route.split(" ")
    url = path.format(
        payment_id=refunded["payment"]["id"],
        refund_id=refunded["refund"]["id"],
        invoice_id=refunded["invoice"]["id"],
    )
    before = await _all(stack, "SELECT count(*) FROM refunds")
    if method == "POST":
        r = await stack.api.post(
            url, json={"amount_paise": 100, "reason": "matrix"}, headers=headers
        )
    else:
        r = await stack.api.get(url, headers=headers)
    if caller == "anonymous":
        assert r.status_code == 401
    elif caller in REFUND_INVOICE_ALLOW[route]:
        assert r.status_code == OK[method], (route, caller, r.text)
        if route == "GET /v1/invoices" and caller == "other_member":
            assert r.json()["data"] == []  # allowed, and sees nothing of others'
        if method == "POST":
            await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    else:
        # Refused, or (for someone else's document) not even confirmed to exist.
        status = REFUND_INVOICE_REFUSE[route][caller]
        assert r.status_code == status, (route, caller, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == PROBLEM_CODE[status], r.text
        assert await _all(stack, "SELECT count(*) FROM refunds") == before
