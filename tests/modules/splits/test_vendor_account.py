"""Which payout account a community is registered at Cashfree with: the payees' rules hold
on the split path too. An account that replaced a verified one is paid nobody until its
cooling-off has passed (`payees/service.py`); Cashfree settles a vendor's part straight to
the account it was registered with, so registering one still in its cooling-off would pay
it at once, past the rule that gives finance and support the time to catch a hijack."""

from __future__ import annotations

import uuid

import pytest
from structlog.testing import capture_logs

from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.idempotency.keys import KeyedRequest
from commdesk_billing.modules.splits.model import vendor_id_for
from commdesk_billing.security.sealed import key_ring
from tests.modules.payees.helpers import change_account, fresh_account, payable_payee
from tests.modules.splits.conftest import KYC, Split
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    finance_token,
    open_sponsorship,
    sponsor_token,
)


async def _payee(split: Split, cid: str) -> uuid.UUID:
    found = await split.stack.scalar(
        "SELECT id FROM payees WHERE kind = 'community' AND subject_id = :c", c=cid
    )
    return uuid.UUID(str(found))


async def _new_account(split: Split, cid: str) -> None:
    """The community's owners change its account (as the API does: verified, 72 h cooling-off)."""
    async with payouts_client(split.stack.settings) as payouts:
        await change_account(
            split.stack.engine, payouts, key_ring(split.stack.settings), await _payee(split, cid)
        )


async def test_an_account_in_its_cooling_off_is_not_registered(split: Split, put: Put) -> None:
    cid = await split.community(put)
    await _new_account(split, cid)
    r = await split.register(cid)
    assert (r.status_code, r.json()["code"]) == (409, "split_vendor_account_cooling_off"), r.text
    assert "payouts_blocked_until" in r.json()
    count = await split.stack.scalar(
        "SELECT count(*) FROM split_vendors WHERE community_id = :c", c=cid
    )
    assert count == 0
    vendor = await split.stack.sandbox.get(f"/pg/easy-split/vendors/{vendor_id_for(cid)}")
    assert vendor.status_code == 404, vendor.text  # nothing was created at Cashfree


async def test_a_vendor_keeps_its_account_while_the_new_one_cools_off(
    split: Split, put: Put
) -> None:
    cid, vendor_id = await split.vendor(put)
    before = await split.stack.sandbox.get(f"/pg/easy-split/vendors/{vendor_id}")
    registered = await split.stack.scalar(
        "SELECT account_id FROM split_vendors WHERE community_id = :c", c=cid
    )
    await _new_account(split, cid)
    r = await split.register(cid, name="Chess Club Trust Two")
    assert (r.status_code, r.json()["code"]) == (409, "split_vendor_account_cooling_off"), r.text
    # Nothing changed here or at Cashfree: the vendor is paid to the account it had.
    after = await split.stack.sandbox.get(f"/pg/easy-split/vendors/{vendor_id}")
    assert after.json()["bank"] == before.json()["bank"], after.text
    assert after.json()["name"] == before.json()["name"]
    still = await split.stack.scalar(
        "SELECT account_id FROM split_vendors WHERE community_id = :c", c=cid
    )
    assert still == registered
    got = await split.stack.api.get(
        f"/v1/communities/{cid}/split-vendor", headers=bearer(finance_token(split.stack))
    )
    assert got.json()["status"] == "ACTIVE", got.text


async def test_a_suspended_payee_or_a_replaced_account_takes_no_split(
    split: Split, put: Put
) -> None:
    """Cashfree settles a vendor to the account it holds, whatever our payee says since: a
    community whose payee finance suspended ("never paid out while suspended"), or whose
    owners replaced the account the vendor holds (only the current account is ever paid),
    gets its sponsorships in escrow until finance registers it again."""
    cid, vendor_id = await split.vendor(put)
    tok = sponsor_token(split.stack)
    payee = await _payee(split, cid)
    r = await split.stack.api.post(
        f"/v1/payees/{payee}/suspend",
        json={"reason": "fraud review"},
        headers=bearer(finance_token(split.stack)),
    )
    assert r.status_code == 200, r.text
    s = await open_sponsorship(split.stack, tok, cid)
    assert (s["path"], s["vendor_id"]) == ("escrow", None)
    r = await split.stack.api.post(
        f"/v1/payees/{payee}/reactivate",
        json={"reason": "cleared"},
        headers=bearer(finance_token(split.stack)),
    )
    assert r.status_code == 200, r.text
    s = await open_sponsorship(split.stack, tok, cid)
    assert (s["path"], s["vendor_id"]) == ("split", vendor_id)

    await _new_account(split, cid)
    s = await open_sponsorship(split.stack, tok, cid)
    assert (s["path"], s["vendor_id"]) == ("escrow", None)


async def test_the_opened_account_number_and_the_pan_go_to_cashfree_only(
    split: Split, put: Put, caplog: pytest.LogCaptureFixture
) -> None:
    """`payees/disclosure.py` opens the sealed number for the vendor create call: it reaches
    Cashfree and nothing of ours (no answer, log, audit entry, stored key answer or row);
    the PAN is kept masked."""
    number, ifsc = fresh_account()
    cid = await put()
    async with payouts_client(split.stack.settings) as payouts:
        await payable_payee(
            split.stack.engine,
            payouts,
            key_ring(split.stack.settings),
            subject_id=cid,
            account=(number, ifsc),
        )
    with capture_logs() as logs:
        r = await split.register(cid)
        got = await split.stack.api.get(
            f"/v1/communities/{cid}/split-vendor", headers=bearer(finance_token(split.stack))
        )
    assert r.status_code == 201, r.text
    at_cashfree = await split.stack.sandbox.get(f"/pg/easy-split/vendors/{vendor_id_for(cid)}")
    assert number in at_cashfree.text  # sent, so the vendor is paid to it
    pan = KYC["pan"]
    assert r.json()["pan_mask"] == "XXXXXX" + pan[-4:]
    stored = await split.stack.scalar(
        "SELECT concat_ws(' ', (SELECT string_agg(t::text, ' ') FROM split_vendors t),"
        " (SELECT string_agg(t::text, ' ') FROM audit_logs t"
        "   WHERE target_id = :c),"
        " (SELECT string_agg(t.response_body::text, ' ') FROM idempotency_keys t"
        "   WHERE path LIKE '%' || :c || '%'))",
        c=cid,
    )
    for leak in (number, pan):
        assert leak not in r.text and leak not in got.text
        assert leak not in repr(logs) and leak not in caplog.text
        assert leak not in str(stored)


async def test_the_stored_key_confirms_no_guessed_pan(split: Split, put: Put) -> None:
    """The registration's Idempotency-Key keeps a hash of the request. With the PAN in it,
    everything else in the body being on the vendor's row and its last four on `pan_mask`,
    a reader of the database confirms a guessed PAN offline (about 26^5 x 10 guesses): the
    PAN would be as good as stored. The hash takes a keyed fingerprint of it instead, as
    the payees' key does for an account number."""
    cid = await split.community(put)
    r = await split.register(cid)
    assert r.status_code == 201, r.text
    path = f"/v1/communities/{cid}/split-vendor"
    stored = await split.stack.scalar(
        "SELECT request_hash FROM idempotency_keys WHERE path = :p", p=path
    )
    guess = KeyedRequest(
        scope="", key="", method="POST", path=path, body={**KYC, "gstin": None}
    ).request_hash
    assert stored is not None and stored != guess
    # A repeat of the same request still answers as the first did.
    headers = bearer(finance_token(split.stack))
    first = await split.stack.api.post(path, json=KYC, headers=headers)
    again = await split.stack.api.post(path, json=KYC, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await split.stack.api.post(path, json={**KYC, "pan": "ABCPV1235D"}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
