"""The Easy Split vendor routes against every caller kind (`tests/authz.py`
SPLIT_VENDOR_ALLOW), and hostile requests answered with RFC 9457 problems that store
nothing."""

from __future__ import annotations

import uuid
from typing import Any

from commdesk_billing.gateway.factory import cashfree_client
from commdesk_billing.modules.splits import service
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import SPLIT_VENDOR_ALLOW, SPLIT_VENDOR_CALLERS
from tests.modules.splits.conftest import KYC, Split
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    finance_token,
    open_sponsorship,
    owner_token,
    sponsor_token,
)

_ROLES = {
    "member": Role.member,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
    "sponsor": Role.sponsor,
    "service": Role.service,
}


def _headers(split: Split, caller: str, cid: str) -> dict[str, str]:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    settings = split.stack.settings
    if caller == "anonymous":
        return key
    if caller == "forged":
        return {"Authorization": "Bearer not.a.token", **key}
    if caller == "owner_record":
        tok = issue_token(settings, sub=f"owner-{cid}", role=Role.member)
    elif caller == "owner_claim":
        tok = owner_token(split.stack, cid)
    elif caller == "owner_elsewhere":
        tok = issue_token(
            settings, sub="co-else", role=Role.community_owner, communities=["elsewhere"]
        )
    else:
        tok = issue_token(settings, sub=f"{caller}-1", role=_ROLES[caller])
    return {"Authorization": f"Bearer {tok}", **key}


async def test_every_caller_gets_what_the_matrix_says(split: Split, put: Put) -> None:
    cid = await split.community(put)
    order = [
        "POST /v1/communities/{community_id}/split-vendor",
        "GET /v1/communities/{community_id}/split-vendor",
    ]
    assert sorted(order) == sorted(SPLIT_VENDOR_ALLOW)
    for route in order:
        method, path = route.split(" ", 1)
        for caller in SPLIT_VENDOR_CALLERS:
            json: dict[str, Any] | None = KYC if method == "POST" else None
            r = await split.stack.api.request(
                method,
                path.format(community_id=cid),
                json=json,
                headers=_headers(split, caller, cid),
            )
            if caller in SPLIT_VENDOR_ALLOW[route]:
                assert r.status_code in (200, 201), (route, caller, r.text)
                assert r.json()["vendor_id"].startswith("cdbc_")
                assert "account_number" not in r.text and KYC["pan"] not in r.text
            else:
                want = 401 if caller in ("anonymous", "forged") else 403
                assert r.status_code == want, (route, caller, r.text)
                assert r.headers["content-type"] == MEDIA_TYPE


async def _count(split: Split) -> int:
    return int(await split.stack.scalar("SELECT count(*) FROM split_vendors"))


def _hostile() -> dict[str, tuple[dict[str, Any], int]]:
    return {
        "bad PAN": ({**KYC, "pan": "ABCP1234D"}, 422),
        "PAN lower case": ({**KYC, "pan": "abcpv1234d"}, 422),
        "bad GSTIN": ({**KYC, "gstin": "29ABCPV1234D1Z"}, 422),
        "bad phone": ({**KYC, "phone": "12345"}, 422),
        "phone as number": ({**KYC, "phone": 9876543210}, 422),
        "bad email": ({**KYC, "email": "no-at-sign"}, 422),
        "name with specials": ({**KYC, "name": "Chess <script>"}, 422),
        "name too long": ({**KYC, "name": "x" * 101}, 422),
        "name with NUL": ({**KYC, "name": "Chess\x00Club"}, 422),
        "unknown account type": ({**KYC, "account_type": "TRUST"}, 422),
        "empty business type": ({**KYC, "business_type": ""}, 422),
        "bank account in the body": ({**KYC, "bank_account_number": "026291800001191"}, 422),
        "missing PAN": ({k: v for k, v in KYC.items() if k != "pan"}, 422),
        "not an object": ([1, 2], 422),  # type: ignore[dict-item]
    }


async def test_hostile_registrations_are_problems_that_store_nothing(
    split: Split, put: Put
) -> None:
    cid = await split.community(put)
    url = f"/v1/communities/{cid}/split-vendor"
    for name, (payload, status) in _hostile().items():
        before = await _count(split)
        headers = bearer(finance_token(split.stack))
        r = await split.stack.api.post(url, json=payload, headers=headers)
        assert r.status_code == status, (name, r.text)
        assert r.headers["content-type"] == MEDIA_TYPE, name
        assert await _count(split) == before, name
    for bad in ("c%2F..%2Fadmin", "c" * 65, "c.1"):
        r = await split.stack.api.post(
            f"/v1/communities/{bad}/split-vendor",
            json=KYC,
            headers=bearer(finance_token(split.stack)),
        )
        assert r.status_code in (404, 422), (bad, r.text)
    r = await split.stack.api.post(url, json=KYC, headers=bearer(finance_token(split.stack), False))
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_required")
    # The same key with another body: refused, the first answer kept.
    headers = bearer(finance_token(split.stack))
    first = await split.stack.api.post(url, json=KYC, headers=headers)
    assert first.status_code == 201, first.text
    reused = await split.stack.api.post(url, json={**KYC, "name": "Other"}, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    replay = await split.stack.api.post(url, json=KYC, headers=headers)
    assert replay.status_code == 201 and replay.json() == first.json()
    # One registration, one audit entry (the refusals and the replay wrote none).
    entries = await split.stack.scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'split_vendor.registered'"
        " AND target_id = :c",
        c=cid,
    )
    assert entries == 1


async def test_a_community_without_a_verified_account_is_no_vendor(split: Split, put: Put) -> None:
    finance = bearer(finance_token(split.stack))
    bare = await put()  # no payee at all
    before = await _count(split)
    r = await split.register(bare)
    assert (r.status_code, r.json()["code"]) == (409, "split_vendor_account_missing"), r.text
    r = await split.stack.api.get(f"/v1/communities/{bare}/split-vendor", headers=finance)
    assert (r.status_code, r.json()["code"]) == (404, "split_vendor_not_found"), r.text
    unknown = f"c-{uuid.uuid4().hex[:12]}"
    r = await split.register(unknown)
    assert (r.status_code, r.json()["code"]) == (404, "community_not_found"), r.text
    suspended = await put(status="suspended")
    r = await split.register(suspended)
    assert (r.status_code, r.json()["code"]) == (409, "community_suspended"), r.text
    assert await _count(split) == before


async def test_a_vendor_in_kyc_takes_no_split_until_cashfree_says_active(
    split: Split, put: Put
) -> None:
    """Registered while Cashfree still checks it: the community's sponsorships go to escrow;
    once Cashfree says ACTIVE (the status read again), they are split."""
    await split.easy_split(kyc_s=3600)
    cid = await split.community(put)
    r = await split.register(cid)
    assert (r.status_code, r.json()["status"], r.json()["active"]) == (
        201,
        "IN_BENE_CREATION",
        False,
    ), r.text
    vendor_id = r.json()["vendor_id"]
    tok = sponsor_token(split.stack)
    first = await open_sponsorship(split.stack, tok, cid)
    assert (first["path"], first["vendor_id"]) == ("escrow", None)
    forced = await split.stack.sandbox.post(
        f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "activate"}
    )
    assert forced.status_code == 200, forced.text
    second = await open_sponsorship(split.stack, tok, cid)
    assert (second["path"], second["vendor_id"]) == ("split", vendor_id)
    blocked = await split.stack.sandbox.post(
        f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "block"}
    )
    assert blocked.status_code == 200, blocked.text
    third = await open_sponsorship(split.stack, tok, cid)
    assert third["path"] == "escrow"
    got = await split.stack.api.get(
        f"/v1/communities/{cid}/split-vendor", headers=bearer(finance_token(split.stack))
    )
    assert (got.json()["status"], got.json()["active"]) == ("BLOCKED", False)


async def test_the_job_finds_a_vendor_cashfree_has_made_active(split: Split, put: Put) -> None:
    await split.easy_split(kyc_s=3600)
    cid = await split.community(put)
    r = await split.register(cid)
    assert r.json()["status"] == "IN_BENE_CREATION", r.text
    forced = await split.stack.sandbox.post(
        f"/_sandbox/easy-split/vendors/{r.json()['vendor_id']}", json={"action": "activate"}
    )
    assert forced.status_code == 200, forced.text
    async with cashfree_client(split.stack.settings) as client:
        assert await service.refresh_waiting(split.stack.engine, client, limit=10_000) >= 1
    status = await split.stack.scalar(
        "SELECT status FROM split_vendors WHERE community_id = :c", c=cid
    )
    assert status == "ACTIVE"
