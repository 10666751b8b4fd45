"""A sponsorship's GST follows the sponsor's state as a purchase's does: the state named in
the request, else the one on the sponsor's record, else ours."""

from __future__ import annotations

import uuid

from tests.harness.stack import Stack
from tests.modules.sponsorships.conftest import Put, open_sponsorship, sponsor_token


async def test_the_sponsors_recorded_state_decides_igst_as_for_a_purchase(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    sub = f"sponsor-{uuid.uuid4().hex[:12]}"
    tok = sponsor_token(stack, sub)
    first = await open_sponsorship(stack, tok, cid)
    # Ours (29) while the record names no state: CGST + SGST.
    assert await stack.scalar(
        "SELECT (buyer_state, cgst_paise > 0, igst_paise) FROM payments WHERE id = :p",
        p=first["payment"]["id"],
    ) == ("29", True, 0)
    await stack.execute("UPDATE users SET state_code = '27' WHERE external_id = :s", s=sub)
    second = await open_sponsorship(stack, tok, cid)
    # Maharashtra's sponsor, a Karnataka seller: IGST, as their credit purchase would be.
    assert await stack.scalar(
        "SELECT (buyer_state, cgst_paise, sgst_paise, igst_paise) FROM payments WHERE id = :p",
        p=second["payment"]["id"],
    ) == ("27", 0, 0, second["gst_paise"])
    # A state in the request still wins.
    third = await open_sponsorship(stack, tok, cid, buyer_state="29")
    assert (
        await stack.scalar(
            "SELECT buyer_state FROM payments WHERE id = :p", p=third["payment"]["id"]
        )
        == "29"
    )


async def test_a_registered_sponsor_is_supplied_in_the_gstins_state_as_for_a_purchase(
    stack: Stack, put: Put
) -> None:
    """A billing profile with a GSTIN fixes the place of supply of a purchase
    (`payments.buyers`); a sponsorship is an order of the same buyer and follows it."""
    cid = await put()
    tok = sponsor_token(stack, f"sponsor-{uuid.uuid4().hex[:12]}")
    profile = {
        "legal_name": "Acme Communities Private Limited",
        "address_line1": "4th Floor, 12 FC Road",
        "city": "Pune",
        "postal_code": "411004",
        "state_code": "27",
        "gstin": "27AAPFU0939F1ZV",  # registered in Maharashtra; the seller is in 29
    }
    r = await stack.api.put(
        "/v1/billing-profile", json=profile, headers={"Authorization": f"Bearer {tok}"}
    )
    assert r.status_code == 200, r.text
    s = await open_sponsorship(stack, tok, cid)
    # Inter-state: IGST, never the seller's CGST + SGST.
    assert await stack.scalar(
        "SELECT (buyer_state, cgst_paise, sgst_paise, igst_paise) FROM payments WHERE id = :p",
        p=s["payment"]["id"],
    ) == ("27", 0, 0, s["gst_paise"])
    # Another state in the request is refused, as for a purchase.
    from tests.modules.sponsorships.conftest import bearer, body

    other = await stack.api.post(
        "/v1/sponsorships", json=body(cid, buyer_state="29"), headers=bearer(tok)
    )
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "buyer_state_conflicts_gstin"
