"""The payee routes in-process, Cashfree's Payouts sandbox over HTTP: every caller kind
against the matrix (`tests/authz.py` PAYEE_ALLOW), hostile bodies and ids answered with RFC
9457 problems that change nothing, unknown payees, partner payees, the finance list."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.problems import MEDIA_TYPE
from tests.authz import PAYEE_ALLOW, PAYEE_CALLERS
from tests.harness.mongo import MongoTarget
from tests.modules.payees.conftest import PayeeApp, World, new_community
from tests.modules.payees.helpers import fresh_account


def bank(account: tuple[str, str] | None = None, holder: str = "Priya Sharma") -> dict[str, Any]:
    number, ifsc = account or fresh_account()
    return {"method": "bank", "account_holder": holder, "account_number": number, "ifsc": ifsc}


async def new_payee(api: httpx.AsyncClient, world: World, caller: str = "finance_admin") -> str:
    r = await api.post(
        "/v1/payees",
        json={"kind": "community", "subject_id": world.community, "display_name": "Chess"},
        headers=world.headers(caller),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def with_account(api: httpx.AsyncClient, world: World, payee_id: str) -> dict[str, Any]:
    r = await api.put(
        f"/v1/payees/{payee_id}/payout-account", json=bank(), headers=world.headers("finance_admin")
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    body = dict(r.json())
    assert body["code"] == code, body
    return body


@pytest.mark.parametrize("route", sorted(PAYEE_ALLOW))
async def test_every_caller_gets_what_the_matrix_says(
    route: str, api: httpx.AsyncClient, payee_app: PayeeApp, mongodb: MongoTarget
) -> None:
    method, path = route.split(" ", 1)
    for caller in PAYEE_CALLERS:
        owner = f"owner-{uuid.uuid4().hex[:10]}"
        world = World(payee_app.settings, await new_community(mongodb, owner), owner)
        body: dict[str, Any] | None = None
        url = path
        if route == "POST /v1/payees":
            body = {"kind": "community", "subject_id": world.community, "display_name": "M"}
        elif "{payee_id}" in path:
            payee_id = await new_payee(api, world)
            url = path.format(payee_id=payee_id)
            if route.startswith("GET") and path.endswith("payout-account"):
                await with_account(api, world, payee_id)
            body = {
                "PUT /v1/payees/{payee_id}/payout-account": bank(),
                "POST /v1/payees/{payee_id}/suspend": {"reason": "matrix"},
                "POST /v1/payees/{payee_id}/reactivate": {"reason": "matrix"},
            }.get(route)
        r = await api.request(method, url, json=body, headers=world.headers(caller))
        if caller in PAYEE_ALLOW[route]:
            assert r.status_code in (200, 201), (route, caller, r.text)
        else:
            want = 401 if caller in ("anonymous", "forged") else 403
            assert r.status_code == want, (route, caller, r.status_code, r.text)
            assert r.headers["content-type"] == MEDIA_TYPE


HOSTILE_PAYEES: list[Any] = [
    {"kind": "vendor", "subject_id": "c-1", "display_name": "x"},
    {"kind": "community", "subject_id": "has space", "display_name": "x"},
    {"kind": "community", "subject_id": "x" * 65, "display_name": "x"},
    {"kind": "community", "subject_id": 42, "display_name": "x"},
    {"kind": "community", "subject_id": "c-1", "display_name": ""},
    {"kind": "community", "subject_id": "c-1", "display_name": "x" * 201},
    {"kind": "community", "subject_id": "c-1", "display_name": "nul\u0000"},
    {"kind": "community", "subject_id": "c-1", "display_name": "line\nbreak"},
    {"kind": "community", "subject_id": "c-1", "display_name": "x", "status": "active"},
    {"kind": "community", "subject_id": "c-1"},
    [],
    "payee",
    None,
]


@pytest.mark.parametrize("body", HOSTILE_PAYEES)
async def test_hostile_payee_bodies_are_problems(
    body: Any, api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    before = await _count(engine, "payees")
    r = await api.post("/v1/payees", json=body, headers=world.headers("finance_admin"))
    problem(r, 422, "validation_error")
    assert await _count(engine, "payees") == before


_N, _I = fresh_account()
HOSTILE_ACCOUNTS: list[Any] = [
    {
        "method": "bank",
        "account_holder": "Priya Sharma",
        "account_number": _N,
        "ifsc": "hdfc0001234",
    },
    {
        "method": "bank",
        "account_holder": "Priya Sharma",
        "account_number": _N,
        "ifsc": "HDFC1001234",
    },
    {
        "method": "bank",
        "account_holder": "Priya Sharma",
        "account_number": _N,
        "ifsc": "HDFC000123",
    },
    {"method": "bank", "account_holder": "Priya Sharma", "account_number": "12345678", "ifsc": _I},
    {"method": "bank", "account_holder": "Priya Sharma", "account_number": "1" * 19, "ifsc": _I},
    {
        "method": "bank",
        "account_holder": "Priya Sharma",
        "account_number": "12345678901a",
        "ifsc": _I,
    },
    {"method": "bank", "account_holder": "Priya Sharma", "account_number": int(_N), "ifsc": _I},
    {
        "method": "bank",
        "account_holder": "Priya Sharma",
        "account_number": _N + "\u0000",
        "ifsc": _I,
    },
    {"method": "bank", "account_holder": "Priya  Sharma", "account_number": _N, "ifsc": _I},
    {"method": "bank", "account_holder": "Priya Sharma 2", "account_number": _N, "ifsc": _I},
    {"method": "bank", "account_holder": "Dr. Priya", "account_number": _N, "ifsc": _I},
    {"method": "bank", "account_holder": "A" * 101, "account_number": _N, "ifsc": _I},
    {"method": "bank", "account_holder": "", "account_number": _N, "ifsc": _I},
    {"method": "bank", "account_holder": "Priya Sharma", "account_number": _N},
    {"method": "bank", "account_holder": "Priya Sharma", "account_number": _N, "ifsc": _I, "x": 1},
    {"method": "bank", "account_holder": "Priya", "account_number": _N, "ifsc": _I, "vpa": "a@b"},
    {"method": "upi", "account_holder": "Priya Sharma", "vpa": "no-at-sign"},
    {"method": "upi", "account_holder": "Priya Sharma", "vpa": "a@b"},
    {"method": "upi", "account_holder": "Priya Sharma", "vpa": "x" * 60 + "@upi"},
    {"method": "upi", "account_holder": "Priya Sharma", "vpa": "priya@upi", "ifsc": _I},
    {"method": "cash", "account_holder": "Priya Sharma"},
    {"account_holder": "Priya Sharma", "account_number": _N, "ifsc": _I},
    [],
    "account",
]


@pytest.mark.parametrize("body", HOSTILE_ACCOUNTS)
async def test_hostile_account_bodies_are_problems_that_never_echo_the_number(
    body: Any, api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    r = await api.put(
        f"/v1/payees/{payee_id}/payout-account", json=body, headers=world.headers("owner_record")
    )
    problem(r, 422, "validation_error")
    assert _N not in r.text
    assert await _count(engine, "payout_accounts", payee_id) == 0


async def test_unknown_and_malformed_payee_ids(api: httpx.AsyncClient, world: World) -> None:
    nobody = uuid.uuid4()
    fin = world.headers
    problem(
        await api.get(f"/v1/payees/{nobody}", headers=fin("finance_admin")), 404, "payee_not_found"
    )
    problem(
        await api.get(f"/v1/payees/{nobody}/payout-account", headers=fin("owner_record")),
        404,
        "payee_not_found",
    )
    problem(
        await api.put(
            f"/v1/payees/{nobody}/payout-account", json=bank(), headers=fin("owner_record")
        ),
        404,
        "payee_not_found",
    )
    problem(
        await api.post(
            f"/v1/payees/{nobody}/suspend", json={"reason": "x"}, headers=fin("finance_admin")
        ),
        404,
        "payee_not_found",
    )
    problem(
        await api.get("/v1/payees/not-a-uuid", headers=fin("finance_admin")),
        422,
        "validation_error",
    )
    payee_id = await new_payee(api, world)
    problem(
        await api.get(f"/v1/payees/{payee_id}/payout-account", headers=fin("auditor")),
        404,
        "payout_account_not_found",
    )


async def test_payee_conflicts_unknown_subjects_and_missing_keys(
    api: httpx.AsyncClient, world: World
) -> None:
    await new_payee(api, world, "owner_record")
    body = {"kind": "community", "subject_id": world.community, "display_name": "Again"}
    problem(
        await api.post("/v1/payees", json=body, headers=world.headers("owner_claim")),
        409,
        "payee_exists",
    )
    gone = {"kind": "community", "subject_id": "c-nobody-knows", "display_name": "x"}
    problem(
        await api.post("/v1/payees", json=gone, headers=world.headers("finance_admin")),
        404,
        "community_not_found",
    )
    no_partner = {"kind": "partner", "subject_id": "p-nobody", "display_name": "x"}
    problem(
        await api.post("/v1/payees", json=no_partner, headers=world.headers("finance_admin")),
        404,
        "partner_not_found",
    )
    no_key = world.headers("finance_admin")
    del no_key["Idempotency-Key"]
    problem(
        await api.post("/v1/payees", json=gone, headers=no_key), 400, "idempotency_key_required"
    )


async def test_partner_payees_are_finance_admins(api: httpx.AsyncClient, world: World) -> None:
    partner_id = f"p-{uuid.uuid4().hex[:10]}"
    r = await api.post(
        "/v1/partners",
        json={"id": partner_id, "name": "Acme", "share_bps": 500},
        headers=world.headers("finance_admin"),
    )
    assert r.status_code == 201, r.text
    body = {"kind": "partner", "subject_id": partner_id, "display_name": "Acme"}
    problem(
        await api.post("/v1/payees", json=body, headers=world.headers("owner_record")),
        403,
        "forbidden",
    )
    r = await api.post("/v1/payees", json=body, headers=world.headers("finance_admin"))
    assert r.status_code == 201, r.text
    payee = r.json()
    assert (payee["kind"], payee["payable_account"]) == ("partner", f"partner:{partner_id}:payable")
    put = await api.put(
        f"/v1/payees/{payee['id']}/payout-account",
        json=bank(),
        headers=world.headers("owner_claim"),
    )
    problem(put, 403, "forbidden")
    assert (
        await api.get(f"/v1/payees/{payee['id']}", headers=world.headers("support"))
    ).status_code == 200


async def test_the_finance_list_filters_and_pages(
    api: httpx.AsyncClient, payee_app: PayeeApp, mongodb: MongoTarget
) -> None:
    made = []
    for _ in range(3):
        owner = f"owner-{uuid.uuid4().hex[:10]}"
        world = World(payee_app.settings, await new_community(mongodb, owner), owner)
        made.append(await new_payee(api, world))
    fin = world.headers("finance_admin")
    one = await api.get("/v1/payees", params={"subject_id": world.community}, headers=fin)
    assert [p["id"] for p in one.json()["data"]] == [made[-1]]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"kind": "community", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await api.get("/v1/payees", params=params, headers=fin)
        assert r.status_code == 200, r.text
        seen += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    ids = [p["id"] for p in seen]
    assert len(ids) == len(set(ids)) and set(made) <= set(ids)
    assert {p["kind"] for p in seen} == {"community"}
    keys = [(p["created_at"], p["id"]) for p in seen]
    assert keys == sorted(keys, reverse=True)
    problem(
        await api.get("/v1/payees", params={"cursor": "garbage"}, headers=fin),
        422,
        "invalid_cursor",
    )
    problem(
        await api.get("/v1/payees", params={"kind": "vendor"}, headers=fin), 422, "validation_error"
    )
    problem(await api.get("/v1/payees", params={"limit": 0}, headers=fin), 422, "validation_error")


async def test_suspend_and_reactivate_are_audited(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    fin = world.headers
    r = await api.post(
        f"/v1/payees/{payee_id}/suspend",
        json={"reason": "KYC review"},
        headers=fin("finance_admin"),
    )
    assert (r.status_code, r.json()["status"]) == (200, "suspended"), r.text
    r = await api.post(
        f"/v1/payees/{payee_id}/reactivate",
        json={"reason": "cleared"},
        headers=fin("finance_admin"),
    )
    assert (r.status_code, r.json()["status"]) == (200, "active"), r.text
    async with engine.connect() as conn:
        actions = (
            (
                await conn.execute(
                    text(
                        "SELECT action FROM audit_logs WHERE target_type = 'payee' "
                        "AND target_id = :p ORDER BY created_at"
                    ),
                    {"p": payee_id},
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["payee.created", "payee.suspended", "payee.reactivated"]


async def _count(engine: AsyncEngine, table: str, payee_id: str | None = None) -> int:
    where = " WHERE payee_id = :p" if payee_id else ""
    async with engine.connect() as conn:
        n = (
            await conn.execute(text(f"SELECT count(*) FROM {table}{where}"), {"p": payee_id})
        ).scalar_one()
    return int(n)
