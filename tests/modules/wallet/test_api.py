"""The HTTP API: every route against every role, idempotency rules, hostile input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Role, Scope
from commdesk_billing.storage import LocalDocumentStore
from tests.authz import WALLET_ALLOW as ALLOW
from tests.authz import WALLET_CALLERS as CALLERS
from tests.conftest import auth, new_wallet

PROBLEM = "application/problem+json"

SUCCESS = {"GET": 200, "POST": 201}
BODIES: dict[str, dict[str, Any]] = {
    "debits": {"credits": 5, "reason": "matrix"},
    "grants": {"credits": 5, "reason": "matrix"},
    "holds": {"credits": 5, "reason": "matrix"},
    "capture": {"credits": 3},
    "release": {},
}


def _caller_headers(
    caller: str, owner_sub: str, token: Callable[..., str], settings: Settings
) -> dict[str, str]:
    roles = {
        "owner": (Role.member, owner_sub, None),
        "other_member": (Role.member, None, None),
        "community_owner": (Role.community_owner, None, None),
        "finance_admin": (Role.finance_admin, None, None),
        "support": (Role.support, None, None),
        "auditor": (Role.auditor, None, None),
        "service_read": (Role.service, "svc-reader", [Scope.wallets_read.value]),
        "service_debit": (Role.service, "svc-spender", [Scope.wallets_debit.value]),
        "service_none": (Role.service, "svc-nothing", []),
    }
    if caller == "anonymous":
        return {}
    if caller == "forged":
        forged = jwt.encode(
            {
                "sub": owner_sub,
                "role": "finance_admin",
                "iss": settings.jwt_issuer,
                "aud": settings.jwt_audience,
                "exp": datetime.now(UTC) + timedelta(hours=1),
            },
            "not-the-secret-" * 3,
            algorithm="HS256",
        )
        return auth(forged)
    role, sub, scopes = roles[caller]
    return auth(token(role, sub=sub, scopes=scopes))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(ALLOW))
async def test_route_by_role(
    route: str,
    caller: str,
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    token: Callable[..., str],
    settings: Settings,
) -> None:
    owner_sub = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 100, sub=owner_sub)
    hold = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=10,
            idempotency_key=f"mx:{uuid.uuid4()}",
            reason="matrix",
            ttl_s=600,
            created_by=owner_sub,
        ),
    )
    method, path = route.split(" ")
    url = path.format(wallet_id=wallet.id, hold_id=hold.hold.id)  # type: ignore[union-attr]
    headers = _caller_headers(caller, owner_sub, token, settings)
    if method == "POST":
        headers["Idempotency-Key"] = uuid.uuid4().hex
        r = await client.post(url, json=BODIES[path.rsplit("/", 1)[1]], headers=headers)
    else:
        r = await client.get(url, headers=headers)
    if caller in ("anonymous", "forged"):
        expected = 401
    elif caller in ALLOW[route]:
        expected = 200 if path.startswith("/v1/holds/") and method == "POST" else SUCCESS[method]
    else:
        expected = 403
    assert r.status_code == expected, (route, caller, r.text)
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM
        after = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
        assert (after.available_credits, after.locked_credits) == (90, 10)  # nothing moved


async def test_first_use_creates_user_and_wallet_once(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    tok = token(Role.member)
    first = (await client.get("/v1/wallets/me", headers=auth(tok))).json()
    second = (await client.get("/v1/wallets/me", headers=auth(tok))).json()
    assert first["id"] == second["id"]
    assert {
        "id",
        "owner_id",
        "available_credits",
        "locked_credits",
        "pending_credits",
        "lifetime_purchased_credits",
    } <= set(first)
    assert first["available_credits"] == 0


async def _funded(
    client: httpx.AsyncClient, token: Callable[..., str], credits: int
) -> tuple[str, str]:
    member = token(Role.member)
    wid = (await client.get("/v1/wallets/me", headers=auth(member))).json()["id"]
    r = await client.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": credits, "reason": "t"},
        headers=auth(token(Role.finance_admin), uuid.uuid4().hex),
    )
    assert r.status_code == 201
    return member, wid


async def test_idempotency_rules(client: httpx.AsyncClient, token: Callable[..., str]) -> None:
    member, wid = await _funded(client, token, 100)
    url = f"/v1/wallets/{wid}/debits"
    first = await client.post(url, json={"credits": 10, "reason": "a"}, headers=auth(member, "k1"))
    same = await client.post(url, json={"reason": "a", "credits": 10}, headers=auth(member, "k1"))
    assert first.status_code == same.status_code == 201
    assert same.text == first.text and same.headers["idempotent-replayed"] == "true"
    other = await client.post(url, json={"credits": 11, "reason": "a"}, headers=auth(member, "k1"))
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    elsewhere = await client.post(
        f"/v1/wallets/{wid}/holds", json={"credits": 10, "reason": "a"}, headers=auth(member, "k1")
    )
    assert elsewhere.status_code == 422
    # Another caller's key space is separate: the same key is a new request for them.
    svc = token(Role.service, sub="svc-idem", scopes=[Scope.wallets_debit.value])
    theirs = await client.post(url, json={"credits": 10, "reason": "a"}, headers=auth(svc, "k1"))
    assert (
        theirs.status_code == 201
        and theirs.json()["transaction"]["id"] != first.json()["transaction"]["id"]
    )
    # A business refusal is an answer too: replayed even after the wallet could pay.
    refused = await client.post(
        url, json={"credits": 500, "reason": "b"}, headers=auth(member, "k2")
    )
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_credits"
    await client.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": 1000, "reason": "t"},
        headers=auth(token(Role.finance_admin), uuid.uuid4().hex),
    )
    again = await client.post(url, json={"credits": 500, "reason": "b"}, headers=auth(member, "k2"))
    assert again.status_code == 409 and again.text == refused.text
    assert again.headers["content-type"] == PROBLEM
    wallet = (await client.get(f"/v1/wallets/{wid}", headers=auth(member))).json()
    # 100 funded, our debit and the other caller's debit of 10, the 500 refused, 1000 granted.
    assert wallet["available_credits"] == 100 - 10 - 10 + 1000


async def test_statement_pagination_is_newest_first_with_a_cursor(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    member, wid = await _funded(client, token, 100)
    for i in range(7):
        await client.post(
            f"/v1/wallets/{wid}/debits",
            json={"credits": 1, "reason": f"d{i}"},
            headers=auth(member, f"page-{i}"),
        )
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get(f"/v1/wallets/{wid}/transactions", params=params, headers=auth(member))
        ).json()
        seen += [t["seq"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(8, 0, -1))


HOSTILE_DEBITS: list[tuple[Any, int]] = [
    ({"credits": "10", "reason": "x"}, 422),
    ({"credits": 10.0, "reason": "x"}, 422),
    ({"credits": 10.5, "reason": "x"}, 422),
    ({"credits": True, "reason": "x"}, 422),
    ({"credits": None, "reason": "x"}, 422),
    ({"credits": -5, "reason": "x"}, 422),
    ({"credits": 0, "reason": "x"}, 422),
    ({"credits": 10**30, "reason": "x"}, 422),
    ({"credits": 10**10, "reason": "x"}, 422),
    ({"credits": 5}, 422),
    ({"credits": 5, "reason": ""}, 422),
    ({"credits": 5, "reason": "x" * 201}, 422),
    ({"credits": 5, "reason": 7}, 422),
    ({"credits": 5, "reason": "x", "admin": True}, 422),
    ({"credits": 5, "reason": "x", "metadata": {"k": {"nested": 1}}}, 422),
    ({"credits": 5, "reason": "x", "metadata": {f"k{i}": i for i in range(21)}}, 422),
    ({"credits": 5, "reason": "x", "metadata": {"k": "v" * 501}}, 422),
    ({"credits": 5, "reason": "nul \u0000 byte"}, 422),
    (b'{"credits": 5, "reason": "lone \\ud800 surrogate"}', 422),
    ({"credits": 5, "reason": "x", "metadata": {"k\u0000": "v"}}, 422),
    ({"credits": 5, "reason": "x", "source_id": "\u0000"}, 422),
    ([{"credits": 5, "reason": "x"}], 422),
    ("just a string", 422),
    (None, 422),
]


@pytest.mark.parametrize(("body", "status"), HOSTILE_DEBITS)
async def test_hostile_debit_bodies_get_problems_and_move_nothing(
    client: httpx.AsyncClient, token: Callable[..., str], body: Any, status: int
) -> None:
    member, wid = await _funded(client, token, 50)
    headers = auth(member, uuid.uuid4().hex)
    if isinstance(body, bytes):  # JSON that Python's encoder would refuse to produce
        headers["content-type"] = "application/json"
        r = await client.post(f"/v1/wallets/{wid}/debits", content=body, headers=headers)
    else:
        r = await client.post(f"/v1/wallets/{wid}/debits", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert {"type", "title", "status", "code"} <= set(problem) and problem["status"] == status
    assert "Traceback" not in r.text
    wallet = (await client.get(f"/v1/wallets/{wid}", headers=auth(member))).json()
    assert wallet["available_credits"] == 50


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("no_key", 400, "idempotency_key_required"),
        ("long_key", 400, "idempotency_key_invalid"),
        ("space_key", 400, "idempotency_key_invalid"),
        ("not_json", 422, "validation_error"),
        ("text_plain", 415, "unsupported_media_type"),
        ("huge", 413, "payload_too_large"),
        ("huge_chunked", 413, "payload_too_large"),
        ("bad_wallet_id", 422, "validation_error"),
        ("unknown_wallet", 404, "not_found"),
        ("bad_cursor", 422, "invalid_cursor"),
        ("bad_limit", 422, "validation_error"),
        ("expired_token", 401, "unauthorized"),
        ("alg_none", 401, "unauthorized"),
        ("unknown_role", 401, "unauthorized"),
        ("no_route", 404, "not_found"),
        ("wrong_method", 405, "method_not_allowed"),
        ("ttl_too_long", 422, "invalid_amount"),
        ("capture_too_much", 422, "invalid_amount"),
    ],
)
async def test_malformed_requests_get_clear_problems(
    client: httpx.AsyncClient,
    token: Callable[..., str],
    settings: Settings,
    kind: str,
    status: int,
    code: str,
) -> None:
    member, wid = await _funded(client, token, 50)
    debit = f"/v1/wallets/{wid}/debits"
    ok_body = {"credits": 1, "reason": "x"}
    key = uuid.uuid4().hex
    claims = {
        "sub": "x",
        "role": "member",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    secret = settings.jwt_secret.get_secret_value()
    if kind == "no_key":
        r = await client.post(debit, json=ok_body, headers=auth(member))
    elif kind == "long_key":
        r = await client.post(debit, json=ok_body, headers=auth(member, "k" * 256))
    elif kind == "space_key":
        r = await client.post(debit, json=ok_body, headers=auth(member, "has space"))
    elif kind == "not_json":
        r = await client.post(
            debit,
            content=b"{credits: 1",
            headers={**auth(member, key), "content-type": "application/json"},
        )
    elif kind == "text_plain":
        r = await client.post(
            debit, content=b"credits=1", headers={**auth(member, key), "content-type": "text/plain"}
        )
    elif kind == "huge":
        r = await client.post(
            debit, json={**ok_body, "pad": "x" * 70_000}, headers=auth(member, key)
        )
    elif kind == "huge_chunked":

        async def chunks() -> Any:
            for _ in range(40):
                yield b" " * 2048  # no Content-Length: counted as it arrives

        r = await client.post(
            debit,
            content=chunks(),
            headers={**auth(member, key), "content-type": "application/json"},
        )
    elif kind == "bad_wallet_id":
        r = await client.post(
            "/v1/wallets/not-a-uuid/debits", json=ok_body, headers=auth(member, key)
        )
    elif kind == "unknown_wallet":
        r = await client.get(f"/v1/wallets/{uuid.uuid4()}", headers=auth(member))
    elif kind == "bad_cursor":
        r = await client.get(
            f"/v1/wallets/{wid}/transactions", params={"cursor": "zzz"}, headers=auth(member)
        )
    elif kind == "bad_limit":
        r = await client.get(
            f"/v1/wallets/{wid}/transactions", params={"limit": 0}, headers=auth(member)
        )
    elif kind == "expired_token":
        expired = jwt.encode(
            {**claims, "exp": datetime.now(UTC) - timedelta(hours=1)}, secret, algorithm="HS256"
        )
        r = await client.get("/v1/wallets/me", headers=auth(expired))
    elif kind == "alg_none":
        unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
        r = await client.get("/v1/wallets/me", headers=auth(unsigned))
    elif kind == "unknown_role":
        odd = jwt.encode({**claims, "role": "root"}, secret, algorithm="HS256")
        r = await client.get("/v1/wallets/me", headers=auth(odd))
    elif kind == "no_route":
        r = await client.get("/v1/nothing-here", headers=auth(member))
    elif kind == "wrong_method":
        r = await client.delete(f"/v1/wallets/{wid}", headers=auth(member))
    elif kind == "ttl_too_long":
        r = await client.post(
            f"/v1/wallets/{wid}/holds",
            json={"credits": 1, "reason": "x", "ttl_seconds": 30 * 86400},
            headers=auth(member, key),
        )
    else:  # capture_too_much
        h = await client.post(
            f"/v1/wallets/{wid}/holds",
            json={"credits": 5, "reason": "x"},
            headers=auth(member, key),
        )
        r = await client.post(
            f"/v1/holds/{h.json()['hold']['id']}/capture",
            json={"credits": 6},
            headers=auth(member, uuid.uuid4().hex),
        )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == code
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_hold_lifecycle_over_http(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    member, wid = await _funded(client, token, 100)
    h = await client.post(
        f"/v1/wallets/{wid}/holds",
        json={"credits": 60, "reason": "ticket", "ttl_seconds": 120},
        headers=auth(member, uuid.uuid4().hex),
    )
    assert h.status_code == 201
    body = h.json()
    assert body["wallet"]["locked_credits"] == 60 and body["hold"]["status"] == "active"
    hold_id = body["hold"]["id"]
    r = await client.post(f"/v1/holds/{hold_id}/release", headers=auth(member, uuid.uuid4().hex))
    assert r.status_code == 200 and r.json()["hold"]["status"] == "released"
    r2 = await client.post(
        f"/v1/holds/{hold_id}/capture", json={}, headers=auth(member, uuid.uuid4().hex)
    )
    assert r2.status_code == 409 and r2.json()["code"] == "hold_not_active"
    got = await client.get(f"/v1/holds/{hold_id}", headers=auth(member))
    assert got.json()["released_credits"] == 60


async def test_an_owner_cannot_settle_a_hold_a_service_placed(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    member, wid = await _funded(client, token, 100)
    svc = token(Role.service, sub="svc-tickets", scopes=[Scope.wallets_debit.value])
    h = await client.post(
        f"/v1/wallets/{wid}/holds",
        json={"credits": 80, "reason": "ticket"},
        headers=auth(svc, uuid.uuid4().hex),
    )
    assert h.status_code == 201
    hold_id = h.json()["hold"]["id"]
    for action, body in (("capture", {"credits": 1}), ("release", {})):
        r = await client.post(
            f"/v1/holds/{hold_id}/{action}", json=body, headers=auth(member, uuid.uuid4().hex)
        )
        assert r.status_code == 403, r.text
    r = await client.post(
        f"/v1/holds/{hold_id}/capture", json={"credits": 80}, headers=auth(svc, uuid.uuid4().hex)
    )
    assert r.status_code == 200 and r.json()["wallet"]["available_credits"] == 20


async def test_grants_are_audited(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    from sqlalchemy import text

    _, wid = await _funded(client, token, 42)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT actor_role, action, details FROM audit_logs WHERE target_id = :w"),
                {"w": wid},
            )
        ).one()
    assert row.actor_role == "finance_admin" and row.action == "wallet.grant.promotional"
    assert row.details["credits"] == 42


@pytest.mark.parametrize(
    "expires_at",
    [
        "0001-01-01T00:00:00+23:59",  # year 0 in UTC: Python cannot hold it
        "9999-12-31T23:59:59-23:59",  # year 10000 in UTC
        "1999-12-31T23:59:59Z",  # just before the window
        "2100-01-01T00:00:00Z",  # the window's end is excluded
        "2030-01-01T00:00:00",  # no offset
    ],
)
async def test_a_grant_expiring_outside_the_window_is_a_422_and_grants_nothing(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, expires_at: str
) -> None:
    from sqlalchemy import text

    member, wid = await _funded(client, token, 10)
    r = await client.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": 5, "reason": "edge", "expires_at": expires_at},
        headers=auth(token(Role.finance_admin), uuid.uuid4().hex),
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert [e["loc"] for e in problem["errors"]] == [["body", "expires_at"]]
    assert expires_at not in r.text  # never echoed
    async with engine.connect() as conn:
        lots = (
            await conn.execute(
                text("SELECT count(*) FROM credit_lots WHERE wallet_id = :w"), {"w": wid}
            )
        ).scalar()
        grants = (
            await conn.execute(
                text("SELECT count(*) FROM audit_logs WHERE target_id = :w"), {"w": wid}
            )
        ).scalar()
    assert (lots, grants) == (1, 1)  # the funding grant alone
    wallet = (await client.get(f"/v1/wallets/{wid}", headers=auth(member))).json()
    assert wallet["available_credits"] == 10


async def test_a_grant_expiry_is_stored_in_utc(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    from sqlalchemy import text

    _, wid = await _funded(client, token, 10)
    for at in ("2100-01-01T00:30:00+01:00", "2030-06-01T05:30:00+05:30"):  # inside, in UTC
        r = await client.post(
            f"/v1/wallets/{wid}/grants",
            json={"credits": 5, "reason": "edge", "expires_at": at},
            headers=auth(token(Role.finance_admin), uuid.uuid4().hex),
        )
        assert r.status_code == 201, r.text
    async with engine.connect() as conn:
        expiries = (
            (
                await conn.execute(
                    text(
                        "SELECT expires_at FROM credit_lots WHERE wallet_id = :w "
                        "AND expires_at IS NOT NULL ORDER BY expires_at"
                    ),
                    {"w": wid},
                )
            )
            .scalars()
            .all()
        )
    assert expiries == [
        datetime(2030, 6, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 30, tzinfo=UTC),
    ]


async def test_ops_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["postgresql"] == "ok"
    assert ready.json()["checks"]["document_storage"] == "ok"
    assert ready.json()["checks"]["mongodb"] == "ok"
    await client.get("/v1/wallets/me")
    metrics = (await client.get("/metrics")).text
    assert (
        'billing_http_requests_total{method="GET",route="/v1/wallets/me",status="401"}' in metrics
    )
    openapi = (await client.get("/openapi.json")).json()
    assert "/v1/wallets/{wallet_id}/debits" in openapi["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_document_storage_down_degrades_readiness_but_keeps_us_ready(
    app: Any, client: httpx.AsyncClient, tmp_path: Any
) -> None:
    working = app.state.documents
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    app.state.documents = LocalDocumentStore(not_a_dir)
    try:
        ready = await client.get("/readyz")
    finally:
        app.state.documents = working
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "postgresql": "ok",
        "document_storage": "degraded",
        "mongodb": "ok",
        "redis": "ok",
    }


async def test_a_key_past_its_retention_is_pruned_and_cannot_debit_twice(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    from commdesk_billing.idempotency.keys import prune_expired

    member, wid = await _funded(client, token, 100)
    url = f"/v1/wallets/{wid}/debits"
    key, fresh_key = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    first = await client.post(url, json={"credits": 10, "reason": "a"}, headers=auth(member, key))
    assert first.status_code == 201
    kept = await client.post(
        url, json={"credits": 1, "reason": "b"}, headers=auth(member, fresh_key)
    )
    assert kept.status_code == 201

    async def age(conn: Any) -> None:
        from commdesk_billing.db.sql import sql

        await conn.execute(
            sql(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
                " WHERE key = :k"
            ),
            {"k": key},
        )

    await in_transaction(engine, age)
    assert await prune_expired(engine, timedelta(hours=24)) >= 1

    async def stored(conn: Any) -> list[str]:
        from commdesk_billing.db.sql import sql

        rows = await conn.execute(
            sql("SELECT key FROM idempotency_keys WHERE key IN (:a, :b)"),
            {"a": key, "b": fresh_key},
        )
        return sorted(r.key for r in rows)

    assert await in_transaction(engine, stored) == [fresh_key]  # the young key stays
    # The same request again: its answer is gone, but the debit keeps its own key, so it is
    # answered as done (the same statement line), not applied a second time.
    again = await client.post(url, json={"credits": 10, "reason": "a"}, headers=auth(member, key))
    assert again.status_code == 201, again.text
    assert again.json()["transaction"]["id"] == first.json()["transaction"]["id"]
    # A different debit under the old key is still refused by the operation's own key.
    other = await client.post(url, json={"credits": 12, "reason": "a"}, headers=auth(member, key))
    assert other.status_code == 422, other.text
    wallet = (await client.get(f"/v1/wallets/{wid}", headers=auth(member))).json()
    assert wallet["available_credits"] == 100 - 10 - 1
