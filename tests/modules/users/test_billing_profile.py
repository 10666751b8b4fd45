"""The billing profile, and what it changes: a registered buyer's B2B tax invoice (their
legal name, address and GSTIN, supplied in the GSTIN's state), read back from the PDF."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import BILLING_PROFILE_ALLOW
from tests.harness.stack import Stack
from tests.modules.invoices.test_invoices import _documents, _pdf_text

PROBLEM = "application/problem+json"
GSTIN = "27AAPFU0939F1ZV"  # registered in Maharashtra (27); the seller is in Karnataka (29)
PROFILE: dict[str, Any] = {
    "legal_name": "Acme Communities Private Limited",
    "address_line1": "4th Floor, 12 FC Road",
    "city": "Pune",
    "postal_code": "411004",
    "state_code": "27",
    "gstin": GSTIN,
}


def _h(tok: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **({"Idempotency-Key": key} if key else {})}


async def test_a_profile_is_set_read_and_replaced(stack: Stack) -> None:
    tok = stack.token()
    missing = await stack.api.get("/v1/billing-profile", headers=_h(tok))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    put = await stack.api.put("/v1/billing-profile", json=PROFILE, headers=_h(tok))
    assert put.status_code == 200, put.text
    assert put.json()["registered"] is True and put.json()["gstin"] == GSTIN
    got = (await stack.api.get("/v1/billing-profile", headers=_h(tok))).json()
    assert {k: got[k] for k in PROFILE} == PROFILE
    unregistered = {k: v for k, v in PROFILE.items() if k != "gstin"} | {"state_code": "29"}
    again = await stack.api.put("/v1/billing-profile", json=unregistered, headers=_h(tok))
    assert again.status_code == 200 and again.json()["registered"] is False
    assert again.json()["gstin"] is None and again.json()["state_code"] == "29"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"gstin": "27AAPFU0939F1ZW"}, "check character"),
        ({"gstin": "27AAPFU0939F1Z"}, "15 characters"),
        ({"state_code": "29"}, "registered in state 27"),
        ({"postal_code": "011001"}, "postal_code"),
        ({"state_code": "40", "gstin": None}, "state_code"),
        ({"legal_name": ""}, "legal_name"),
        ({"legal_name": " Acme"}, "leading or trailing"),
        ({"city": "x" * 101}, "city"),
        ({"nickname": "acme"}, "nickname"),
    ],
)
async def test_a_bad_profile_is_a_422_and_changes_nothing(
    stack: Stack, change: dict[str, Any], words: str
) -> None:
    tok = stack.token()
    assert (await stack.api.put("/v1/billing-profile", json=PROFILE, headers=_h(tok))).is_success
    r = await stack.api.put("/v1/billing-profile", json=PROFILE | change, headers=_h(tok))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert words in r.text
    kept = (await stack.api.get("/v1/billing-profile", headers=_h(tok))).json()
    assert {k: kept[k] for k in PROFILE} == PROFILE


@pytest.mark.parametrize("route", sorted(BILLING_PROFILE_ALLOW))
async def test_a_service_has_no_profile(stack: Stack, route: str) -> None:
    method, path = route.split(" ")
    svc = issue_token(
        stack.settings, sub="svc-profile", role=Role.service, scopes=[Scope.wallets_read.value]
    )
    r = await stack.api.request(method, path, json=PROFILE, headers=_h(svc))
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


async def test_a_registered_buyer_gets_a_b2b_invoice_in_their_gstins_state(stack: Stack) -> None:
    tok = stack.token()
    assert (await stack.api.put("/v1/billing-profile", json=PROFILE, headers=_h(tok))).is_success
    elsewhere = await stack.api.post(
        "/v1/payments/orders",
        json={"pack_code": "pack_300", "customer_phone": "9876543210", "buyer_state": "29"},
        headers=_h(tok, uuid.uuid4().hex),
    )
    assert elsewhere.status_code == 422, elsewhere.text
    assert elsewhere.json()["code"] == "buyer_state_conflicts_gstin"
    order = await stack.buy(tok, pack_code="pack_300")
    assert order["igst_paise"] > 0 and order["cgst_paise"] == 0  # 27 buys from 29: IGST
    await stack.pay(order, "upi", "success")
    await stack.wait_status(tok, order["id"], {"CREDITED"})
    # A later change of profile does not change who the order's invoice names.
    moved = PROFILE | {"legal_name": "Someone Else Ltd", "gstin": None}
    assert (await stack.api.put("/v1/billing-profile", json=moved, headers=_h(tok))).is_success
    invoice = (await _documents(stack, order["id"], {"tax_invoice"}))["tax_invoice"]
    assert invoice["place_of_supply"] == "27"
    pdf = await stack.api.get(f"/v1/invoices/{invoice['id']}/pdf", headers=_h(tok))
    text = _pdf_text(pdf.content)
    for shown in (
        f"GSTIN: {GSTIN}",
        PROFILE["legal_name"],
        "4th Floor, 12 FC Road, Pune 411004",
        "Plus",  # the pack's name, not its code
        "Unit Price",
        rupees(invoice["taxable_paise"]),
        rupees(invoice["igst_paise"]),
        "Payment Mode: UPI",
        "Payment Status: Paid",
    ):
        assert shown in text, shown
    assert "pack_300" not in text and "Someone Else" not in text
    refund = await stack.refund(order["id"], amount_paise=10000)
    assert refund.status_code == 202, refund.text
    await stack.wait_refund(refund.json()["id"], {"SUCCESS"})
    note = (await _documents(stack, order["id"], {"credit_note"}))["credit_note"]
    note_text = _pdf_text(
        (await stack.api.get(f"/v1/invoices/{note['id']}/pdf", headers=_h(tok))).content
    )
    assert f"GSTIN: {GSTIN}" in note_text and "Payment Status: Partly refunded" in note_text


async def test_an_unregistered_buyer_stays_b2c(stack: Stack) -> None:
    tok = stack.token()
    profile = {k: v for k, v in PROFILE.items() if k != "gstin"} | {"state_code": "29"}
    assert (await stack.api.put("/v1/billing-profile", json=profile, headers=_h(tok))).is_success
    order = await stack.buy(tok, pack_code="pack_150")
    await stack.pay(order, "app", "success")
    await stack.wait_status(tok, order["id"], {"CREDITED"})
    invoice = (await _documents(stack, order["id"], {"tax_invoice"}))["tax_invoice"]
    text = _pdf_text(
        (await stack.api.get(f"/v1/invoices/{invoice['id']}/pdf", headers=_h(tok))).content
    )
    assert "GSTIN: Unregistered" in text and PROFILE["legal_name"] in text
    assert "Payment Mode: Wallet" in text and invoice["cgst_paise"] > 0
