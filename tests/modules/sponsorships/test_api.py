"""The sponsorship routes against every caller kind (`tests/authz.py` SPONSORSHIP_ALLOW),
and hostile requests answered with RFC 9457 problems that store nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import SPONSORSHIP_ALLOW, SPONSORSHIP_CALLERS, SPONSORSHIP_READERS
from tests.harness.stack import Stack
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    body,
    deliver,
    funded,
    owner_token,
    sponsor_token,
)

_ROLES = {
    "member": Role.member,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
    "service": Role.service,
}


def _token(stack: Stack, caller: str, cid: str, payer: str) -> str | None:
    if caller == "anonymous":
        return None
    if caller == "sponsor":
        return sponsor_token(stack, payer)
    if caller == "other_sponsor":
        return sponsor_token(stack)
    if caller == "owner_record":
        return stack.token(f"owner-{cid}", Role.member)
    if caller == "owner_claim":
        return owner_token(stack, cid)
    if caller == "owner_elsewhere":
        return issue_token(
            stack.settings, sub="co-else", role=Role.community_owner, communities=["elsewhere"]
        )
    return issue_token(stack.settings, sub=f"{caller}-1", role=_ROLES[caller])


def _refusal(route: str, caller: str) -> int:
    if caller == "anonymous":
        return 401
    # A service is refused before anything is looked up (no scope names these routes).
    if "{sponsorship_id}" in route and caller not in SPONSORSHIP_READERS | {"service"}:
        return 404  # someone else's sponsorship: not confirmed to exist
    return 403


async def test_every_caller_gets_what_the_matrix_says(stack: Stack, put: Put) -> None:
    cid = await put()
    payer = f"sponsor-{uuid.uuid4().hex[:10]}"
    milestones = [
        {"title": "One", "amount_paise": 50_000},
        {"title": "Two", "amount_paise": 50_000},
    ]
    s = await funded(stack, sponsor_token(stack, payer), cid, milestones=milestones)
    # Release's allowed callers each release a delivered milestone of their own.
    # Each allowed caller delivers, then releases, a milestone of its own.
    deliver_seq = {"owner_record": 1, "owner_claim": 2}
    release_seq = {"sponsor": 1, "finance_admin": 2}
    order = [  # deliveries before releases: a release needs a delivered milestone
        "POST /v1/sponsorships",
        "GET /v1/sponsorships",
        "GET /v1/sponsorships/{sponsorship_id}",
        "GET /v1/communities/{community_id}/sponsorships",
        "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/deliver",
        "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/release",
    ]
    assert sorted(order) == sorted(SPONSORSHIP_ALLOW)
    for route in order:
        method, path = route.split(" ", 1)
        for caller in SPONSORSHIP_CALLERS:
            tok = _token(stack, caller, cid, payer)
            headers = bearer(tok) if tok else {"Idempotency-Key": uuid.uuid4().hex}
            seq = (release_seq if route.endswith("release") else deliver_seq).get(caller, 1)
            url = path.format(sponsorship_id=s["id"], community_id=cid, seq=seq)
            json: dict[str, Any] | None = body(cid) if route == "POST /v1/sponsorships" else None
            r = await stack.api.request(method, url, json=json, headers=headers)
            if caller in SPONSORSHIP_ALLOW[route]:
                assert r.status_code in (200, 201), (route, caller, r.text)
            else:
                assert r.status_code == _refusal(route, caller), (route, caller, r.text)
                assert r.headers["content-type"] == MEDIA_TYPE
    after = await stack.api.get(
        f"/v1/sponsorships/{s['id']}", headers=bearer(sponsor_token(stack, payer), False)
    )
    assert after.json()["status"] == "completed" and after.json()["escrow_paise"] == 0
    # Each release is audited, by whoever released it (finance_admin's is privileged).
    async with stack.engine.connect() as conn:
        released = (
            await conn.execute(
                text(
                    "SELECT actor_role, (details->>'milestone')::int AS seq FROM audit_logs"
                    " WHERE action = 'sponsorship.milestone.released' AND target_id = :s"
                    " ORDER BY seq"
                ),
                {"s": s["id"]},
            )
        ).all()
    assert [tuple(r) for r in released] == [("sponsor", 1), ("finance_admin", 2)]


async def _counts(stack: Stack) -> tuple[int, int, int]:
    return (
        int(await stack.scalar("SELECT count(*) FROM sponsorships")),
        int(await stack.scalar("SELECT count(*) FROM sponsorship_milestones")),
        int(await stack.scalar("SELECT count(*) FROM payments")),
    )


def _hostile(cid: str) -> dict[str, tuple[dict[str, Any], int, str | None]]:
    ms = [{"title": "A", "amount_paise": 60_000}, {"title": "B", "amount_paise": 39_999}]
    many = [{"title": f"M{i}", "amount_paise": 5_000} for i in range(21)]
    return {
        "zero amount": (body(cid, amount=0), 422, None),
        "negative amount": (body(cid, amount=-100_000), 422, None),
        "amount as text": (body(cid, amount="100000"), 422, None),
        "amount as bool": (body(cid, amount=True), 422, None),
        "amount as float": (body(cid, amount=1000.5), 422, None),
        "below the minimum": (body(cid, amount=9_999), 422, "invalid_amount"),
        "above the maximum": (body(cid, amount=50_000_001), 422, "invalid_amount"),
        "absurd amount": (body(cid, amount=10**19), 422, None),
        "milestones short a paisa": (body(cid, milestones=ms), 422, "invalid_milestones"),
        "milestones empty list": (body(cid, milestones=[]), 201, None),
        "21 milestones": (body(cid, amount=105_000, milestones=many), 422, None),
        "milestone of 0": (
            body(cid, milestones=[{"title": "A", "amount_paise": 0}]),
            422,
            None,
        ),
        "milestone title empty": (
            body(cid, milestones=[{"title": "", "amount_paise": 100_000}]),
            422,
            None,
        ),
        "milestone extra field": (
            body(cid, milestones=[{"title": "A", "amount_paise": 100_000, "paid": True}]),
            422,
            None,
        ),
        "purpose empty": (body(cid, purpose=""), 422, None),
        "purpose too long": (body(cid, purpose="x" * 501), 422, None),
        "purpose with NUL": (body(cid, purpose="chess\x00club"), 422, None),
        "community id path": (body("../admin"), 422, None),
        "community id too long": (body("c" * 65), 422, None),
        "unknown community": (body(f"c-{uuid.uuid4().hex[:12]}"), 404, "community_not_found"),
        "bad phone": (body(cid, customer_phone="12"), 422, None),
        "bad state": (body(cid, buyer_state="99"), 422, None),
        "extra field": (body(cid, fee_bps=0), 422, None),
        "not an object": ([1, 2], 422, None),  # type: ignore[dict-item]
    }


async def test_hostile_bodies_are_problems_that_store_nothing(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    for name, (payload, status, code) in _hostile(cid).items():
        before = await _counts(stack)
        r = await stack.api.post("/v1/sponsorships", json=payload, headers=bearer(tok))
        assert r.status_code == status, (name, r.text)
        if status == 201:
            continue
        assert r.headers["content-type"] == MEDIA_TYPE, name
        if code:
            assert r.json()["code"] == code, (name, r.text)
        assert await _counts(stack) == before, name


async def test_a_suspended_community_takes_no_sponsorship(stack: Stack, put: Put) -> None:
    cid = await put(status="suspended")
    before = await _counts(stack)
    r = await stack.api.post(
        "/v1/sponsorships", json=body(cid), headers=bearer(sponsor_token(stack))
    )
    assert (r.status_code, r.json()["code"]) == (409, "community_suspended"), r.text
    assert await _counts(stack) == before


async def test_no_idempotency_key_no_sponsorship(stack: Stack, put: Put) -> None:
    cid = await put()
    before = await _counts(stack)
    r = await stack.api.post(
        "/v1/sponsorships", json=body(cid), headers=bearer(sponsor_token(stack), False)
    )
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_required")
    assert await _counts(stack) == before


@pytest.mark.parametrize("seq", ["0", "21", "x", "-1", "1.5"])
async def test_milestone_numbers_out_of_range_are_refused(stack: Stack, put: Put, seq: str) -> None:
    cid = await put()
    sid = str(uuid.uuid4())
    for action in ("deliver", "release"):
        r = await stack.api.post(
            f"/v1/sponsorships/{sid}/milestones/{seq}/{action}",
            headers=bearer(owner_token(stack, cid)),
        )
        assert r.status_code == 422, (action, r.text)


async def test_unknown_sponsorship_milestone_and_ids(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    fin = stack.token("finance-1", Role.finance_admin)
    r = await stack.api.get(f"/v1/sponsorships/{uuid.uuid4()}", headers=bearer(fin, False))
    assert (r.status_code, r.json()["code"]) == (404, "sponsorship_not_found")
    r = await stack.api.get("/v1/sponsorships/not-a-uuid", headers=bearer(fin, False))
    assert r.status_code == 422
    s = await funded(stack, tok, cid)
    r = await deliver(stack, owner_token(stack, cid), s["id"], 2)
    assert (r.status_code, r.json()["code"]) == (404, "milestone_not_found")
    r = await stack.api.get("/v1/communities/bad%20id/sponsorships", headers=bearer(fin, False))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_community_id")
    r = await stack.api.get("/v1/sponsorships?cursor=bm9wZQ", headers=bearer(tok, False))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_cursor")


async def test_lists_page_newest_first(stack: Stack, put: Put) -> None:
    cid = await put()
    payer = f"sponsor-{uuid.uuid4().hex[:10]}"
    ids = []
    for amount in (10_000, 20_000, 30_000):
        r = await stack.api.post(
            "/v1/sponsorships",
            json=body(cid, amount=amount),
            headers=bearer(sponsor_token(stack, payer)),
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/sponsorships?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = await stack.api.get(url, headers=bearer(sponsor_token(stack, payer), False))
        assert r.status_code == 200, r.text
        seen += [x["id"] for x in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    r = await stack.api.get(
        f"/v1/communities/{cid}/sponsorships", headers=bearer(owner_token(stack, cid), False)
    )
    assert [x["id"] for x in r.json()["data"]] == ids[::-1]
