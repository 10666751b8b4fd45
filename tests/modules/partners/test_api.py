"""The partner routes in-process: every caller kind against the matrix (`tests/authz.py`
PARTNER_ALLOW), and hostile bodies answered with RFC 9457 problems that change nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import PARTNER_ALLOW, PARTNER_CALLERS
from tests.conftest import Tx, auth

_ROLES = {
    "member": Role.member,
    "community_owner": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}


def headers(settings: Settings, caller: str) -> dict[str, str]:
    key = uuid.uuid4().hex
    if caller == "anonymous":
        return {"Idempotency-Key": key}
    if caller == "forged":
        return auth("not.a.token", key)
    if caller.startswith("service"):
        scopes = ["partners:attribute"] if caller == "service_attribute" else ["wallets:read"]
        return auth(issue_token(settings, sub=caller, role=Role.service, scopes=scopes), key)
    return auth(issue_token(settings, sub=f"{caller}-1", role=_ROLES[caller]), key)


async def new_partner(client: httpx.AsyncClient, settings: Settings, bps: int = 500) -> str:
    partner_id = f"p-{uuid.uuid4().hex[:10]}"
    r = await client.post(
        "/v1/partners",
        json={"id": partner_id, "name": "Matrix", "share_bps": bps},
        headers=headers(settings, "finance_admin"),
    )
    assert r.status_code == 201, r.text
    return partner_id


def _window(days: int = 1) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=365 * 10 * days)
    return {
        "user_id": f"u-{uuid.uuid4().hex}",
        "valid_from": start.isoformat(),
        "valid_until": (start + timedelta(days=1)).isoformat(),
    }


@pytest.mark.parametrize("route", sorted(PARTNER_ALLOW))
async def test_every_caller_gets_what_the_matrix_says(
    route: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    method, path = route.split(" ", 1)
    for caller in PARTNER_CALLERS:
        partner_id = await new_partner(client, settings)
        body: dict[str, Any] | None = {
            "POST /v1/partners": {"id": f"p-{uuid.uuid4().hex[:10]}", "name": "M", "share_bps": 1},
            "PUT /v1/partners/{partner_id}": {"name": "M", "share_bps": 700, "reason": "m"},
            "POST /v1/partners/{partner_id}/attributions": _window(),
        }.get(route)
        url = path.format(partner_id=partner_id)
        r = await client.request(method, url, json=body, headers=headers(settings, caller))
        if caller in PARTNER_ALLOW[route]:
            assert r.status_code in (200, 201), (route, caller, r.text)
        else:
            want = 401 if caller in ("anonymous", "forged") else 403
            assert r.status_code == want, (route, caller, r.status_code, r.text)
            assert r.headers["content-type"] == MEDIA_TYPE


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    assert r.json()["code"] == code, r.json()


HOSTILE_PARTNERS: list[Any] = [
    {"id": "has space", "name": "x", "share_bps": 1},
    {"id": "x" * 65, "name": "x", "share_bps": 1},
    {"id": "ok-id", "name": "x", "share_bps": 5001},
    {"id": "ok-id", "name": "x", "share_bps": -1},
    {"id": "ok-id", "name": "x", "share_bps": "100"},
    {"id": "ok-id", "name": "x", "share_bps": 10.5},
    {"id": "ok-id", "name": "x", "share_bps": True},
    {"id": "ok-id", "name": "", "share_bps": 1},
    {"id": "ok-id", "name": "nul\u0000", "share_bps": 1},
    {"id": "ok-id", "name": "x", "share_bps": 1, "payable_paise": 10**9},
    {"id": "ok-id", "name": "x"},
    [],
    "partner",
]


@pytest.mark.parametrize("body", HOSTILE_PARTNERS)
async def test_hostile_partner_bodies_are_problems(
    body: Any, client: httpx.AsyncClient, settings: Settings, tx: Tx
) -> None:
    r = await client.post("/v1/partners", json=body, headers=headers(settings, "finance_admin"))
    _problem(r, 422, "validation_error")


async def test_partner_conflicts_and_missing_keys(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    partner_id = await new_partner(client, settings)
    again = await client.post(
        "/v1/partners",
        json={"id": partner_id, "name": "Twice", "share_bps": 1},
        headers=headers(settings, "finance_admin"),
    )
    _problem(again, 409, "partner_exists")
    no_key = headers(settings, "finance_admin")
    del no_key["Idempotency-Key"]
    r = await client.post(
        "/v1/partners", json={"id": "p-nokey", "name": "x", "share_bps": 1}, headers=no_key
    )
    _problem(r, 400, "idempotency_key_required")
    missing = await client.put(
        "/v1/partners/p-nobody",
        json={"name": "x", "share_bps": 1, "reason": "r"},
        headers=headers(settings, "finance_admin"),
    )
    _problem(missing, 404, "partner_not_found")
    bad_id = await client.get(
        "/v1/partners/bad%20id/earnings", headers=headers(settings, "finance_admin")
    )
    _problem(bad_id, 422, "validation_error")


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


HOSTILE_ATTRIBUTIONS: list[Any] = [
    {"user_id": "u", "valid_from": "0001-01-01T00:00:00+23:59"},
    {"user_id": "u", "valid_from": "9999-12-31T23:59:59-23:59"},
    {"user_id": "u", "valid_from": "2026-01-01T00:00:00"},  # no offset
    {"user_id": "u", "valid_from": _at(), "valid_until": "2100-01-01T00:00:00Z"},
    {"user_id": "u", "valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00Z"},
    # An empty window, the same instant in two offsets.
    {
        "user_id": "u",
        "valid_from": "2030-01-02T05:30:00+05:30",
        "valid_until": "2030-01-02T00:00:00Z",
    },
    {"user_id": "", "valid_from": _at()},
    {"user_id": "u" * 201, "valid_from": _at()},
    {"user_id": 42, "valid_from": _at()},
    {"user_id": "u", "valid_from": _at(), "partner_id": "another"},
    {"user_id": "u"},
    {"valid_from": _at()},
]


@pytest.mark.parametrize("body", HOSTILE_ATTRIBUTIONS)
async def test_hostile_attribution_bodies_are_problems(
    body: Any, client: httpx.AsyncClient, settings: Settings
) -> None:
    partner_id = await new_partner(client, settings)
    r = await client.post(
        f"/v1/partners/{partner_id}/attributions",
        json=body,
        headers=headers(settings, "service_attribute"),
    )
    _problem(r, 422, "validation_error")


async def test_one_attribution_in_force_per_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first, second = await new_partner(client, settings), await new_partner(client, settings)
    user = f"u-{uuid.uuid4().hex}"
    start = datetime(2030, 1, 1, tzinfo=UTC)

    async def attribute(partner_id: str, days_from: int, days_to: int | None) -> httpx.Response:
        return await client.post(
            f"/v1/partners/{partner_id}/attributions",
            json={
                "user_id": user,
                "valid_from": (start + timedelta(days=days_from)).isoformat(),
                "valid_until": None
                if days_to is None
                else (start + timedelta(days=days_to)).isoformat(),
            },
            headers=headers(settings, "service_attribute"),
        )

    assert (await attribute(first, 0, 30)).status_code == 201
    # Overlapping by a day, with the same partner or another: refused.
    _problem(await attribute(second, 29, 60), 409, "attribution_overlaps")
    _problem(await attribute(first, 10, 20), 409, "attribution_overlaps")
    # Open-ended from before: overlaps too.
    _problem(await attribute(second, -5, None), 409, "attribution_overlaps")
    # Back to back ([from, until) windows): fine.
    assert (await attribute(second, 30, None)).status_code == 201
    _problem(await attribute(first, 400, 500), 409, "attribution_overlaps")
    # An unknown partner, an inactive one.
    _problem(await attribute("p-nobody", -100, -50), 404, "partner_not_found")
    r = await client.put(
        f"/v1/partners/{first}",
        json={"name": "x", "share_bps": 1, "status": "inactive", "reason": "ended"},
        headers=headers(settings, "finance_admin"),
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    _problem(await attribute(first, -100, -50), 409, "partner_inactive")


async def test_a_repeated_key_answers_as_the_first_time(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    partner_id = await new_partner(client, settings)
    h = headers(settings, "service_attribute")
    body = _window()
    first = await client.post(f"/v1/partners/{partner_id}/attributions", json=body, headers=h)
    again = await client.post(f"/v1/partners/{partner_id}/attributions", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = await client.post(f"/v1/partners/{partner_id}/attributions", json=_window(), headers=h)
    _problem(other, 422, "idempotency_key_reused")
