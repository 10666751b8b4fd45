"""The audit log: append-only in the database, where each entry came from (address, user
agent, request id), what it changed, and `GET /v1/audit-logs` (who, filters, cursor)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.security import origin
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.storage import LocalDocumentStore
from tests.authz import AUDIT_ALLOW, AUDIT_CALLERS
from tests.conftest import auth

PROBLEM = "application/problem+json"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _grant(
    client: httpx.AsyncClient, token: Callable[..., str], credits: int, **headers: str
) -> tuple[str, httpx.Response]:
    member = token(Role.member)
    wid = (await client.get("/v1/wallets/me", headers=auth(member))).json()["id"]
    r = await client.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": credits, "reason": "goodwill"},
        headers={**auth(token(Role.finance_admin, sub="fin-ops-1"), uuid.uuid4().hex), **headers},
    )
    assert r.status_code == 201, r.text
    return wid, r


async def _entries(engine: AsyncEngine, target_id: str) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT actor_sub, actor_role, action, request_id, host(ip) AS ip, user_agent,"
                " channel, before, after FROM audit_logs WHERE target_id = :t"
                " ORDER BY created_at, id"
            ),
            {"t": target_id},
        )
        return list(rows)


# --- append-only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_logs SET action = 'nothing.happened'",
        "UPDATE audit_logs SET after = NULL, ip = NULL",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ],
)
async def test_the_database_refuses_to_change_the_log(
    database_url: str, engine: AsyncEngine, statement: str
) -> None:
    principal = Principal(sub="fin-1", role=Role.finance_admin, scopes=frozenset())
    marker = f"t-{uuid.uuid4().hex}"
    await in_transaction(
        engine,
        lambda c: audit.record(
            c, principal, action="test.done", target_type="test", target_id=marker, after={"a": 1}
        ),
    )
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="audit_logs is append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE target_id = $1", marker)
    finally:
        await conn.close()


async def test_an_entry_with_no_actor_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(audit.NoActor):
        await in_transaction(
            engine,
            lambda c: audit.record(c, None, action="x.y", target_type="t", target_id="nobody"),
        )


# --- where it came from, what it changed -------------------------------------------------


async def test_a_grant_records_address_user_agent_request_id_and_the_balance_change(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    rid = f"req-{uuid.uuid4().hex}"
    wid, r = await _grant(client, token, 40, **{"X-Request-Id": rid, "User-Agent": "ops-ui/1.2"})
    assert r.headers["x-request-id"] == rid
    [row] = await _entries(engine, wid)
    assert (row.actor_sub, row.actor_role, row.action) == (
        "fin-ops-1",
        "finance_admin",
        "wallet.grant.promotional",
    )
    # httpx's in-process transport reports the client as 127.0.0.1.
    assert (row.request_id, row.ip, row.user_agent, row.channel) == (
        rid,
        "127.0.0.1",
        "ops-ui/1.2",
        "http",
    )
    assert (row.before, row.after) == ({"available_credits": 0}, {"available_credits": 40})


async def test_without_a_request_id_the_answered_one_is_recorded(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    wid, r = await _grant(client, token, 5)
    [row] = await _entries(engine, wid)
    assert row.request_id == r.headers["x-request-id"] and len(row.request_id) == 32


async def test_a_user_agent_is_cut_to_size_and_a_control_character_drops_it(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    wid, _ = await _grant(client, token, 5, **{"User-Agent": "A" * 5000})
    wid2, _ = await _grant(client, token, 5, **{"User-Agent": "evil\x7fagent"})
    [long] = await _entries(engine, wid)
    [bad] = await _entries(engine, wid2)
    assert long.user_agent == "A" * origin.USER_AGENT_MAX
    assert bad.user_agent is None


@pytest.fixture
async def proxied_client(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The API behind a trusted proxy at 127.0.0.1 (as Traefik in production)."""
    cfg = settings.model_copy(update={"trusted_proxies": ("127.0.0.1/32",)})
    app = create_app(cfg)
    app.state.settings = cfg
    app.state.engine = engine
    app.state.documents = LocalDocumentStore(tmp_path_factory.mktemp("audit-docs"))
    app.state.communities = community_directory(cfg)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
            yield c
    finally:
        await app.state.communities.aclose()


async def test_behind_a_trusted_proxy_the_forwarded_address_is_recorded(
    proxied_client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    wid, _ = await _grant(
        proxied_client, token, 5, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    )
    wid2, _ = await _grant(proxied_client, token, 5, **{"X-Forwarded-For": "not-an-address"})
    [row] = await _entries(engine, wid)
    [junk] = await _entries(engine, wid2)
    assert row.ip == "203.0.113.9"  # the last hop our proxy did not vouch for
    # Never a 500 over a forged header: a hop that is no address stops the walk, and the
    # proxy that passed it on is the last address known to be true (security/addresses.py).
    assert junk.ip == "127.0.0.1"


async def test_a_cli_origin_names_the_operator(engine: AsyncEngine) -> None:
    marker = f"q-{uuid.uuid4().hex}"
    with origin.bound(origin.operator("dlq purge")) as here:
        await in_transaction(
            engine,
            lambda c: audit.record(
                c, None, action="dlq.purged", target_type="queue", target_id=marker
            ),
        )
    [row] = await _entries(engine, marker)
    assert here.actor is not None and here.actor.startswith("cli:")
    assert (row.actor_sub, row.actor_role, row.channel, row.request_id, row.ip) == (
        here.actor,
        "operator",
        "cli",
        "dlq purge",
        None,
    )


# --- GET /v1/audit-logs ----------------------------------------------------------------


def _headers(caller: str, token: Callable[..., str], settings: Settings) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller == "forged":
        return auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    role = {"member": Role.member, "community_owner": Role.community_owner}.get(caller)
    return auth(token(role or Role(caller)))


@pytest.mark.parametrize("caller", AUDIT_CALLERS)
async def test_who_reads_the_log(
    caller: str, client: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    r = await client.get("/v1/audit-logs", headers=_headers(caller, token, settings))
    if caller in ("anonymous", "forged"):
        expected = 401
    elif caller in AUDIT_ALLOW["GET /v1/audit-logs"]:
        expected = 200
    else:
        expected = 403
    assert r.status_code == expected, (caller, r.text)
    if expected == 403:
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "forbidden"


async def test_the_cursor_pages_through_without_gaps_or_duplicates(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    principal = Principal(
        sub=f"pager-{uuid.uuid4().hex}", role=Role.finance_admin, scopes=frozenset()
    )

    async def write(conn: Any) -> None:
        # Many in one transaction: they share created_at, so only the id orders them.
        for i in range(7):
            await audit.record(
                conn, principal, action="test.paged", target_type="test", target_id=f"p{i}"
            )

    await in_transaction(engine, write)
    for i in range(7, 12):
        await in_transaction(
            engine,
            lambda c, i=i: audit.record(
                c, principal, action="test.paged", target_type="test", target_id=f"p{i}"
            ),
        )
    auditor = auth(token(Role.auditor))
    seen: list[str] = []
    stamps: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"actor": principal.sub, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/audit-logs", params=params, headers=auditor)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [e["target_id"] for e in body["data"]]
        stamps += [e["at"] for e in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(f"p{i}" for i in range(12)) and len(seen) == 12
    assert stamps == sorted(stamps, reverse=True)  # newest first


async def test_filters_by_action_target_and_time(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> None:
    wid, _ = await _grant(client, token, 9)
    auditor = auth(token(Role.auditor))
    r = await client.get(
        "/v1/audit-logs",
        params={"target_type": "wallet", "target_id": wid, "action": "wallet.grant.promotional"},
        headers=auditor,
    )
    assert r.status_code == 200
    [entry] = r.json()["data"]
    assert (entry["actor"], entry["role"], entry["after"]) == (
        "fin-ops-1",
        "finance_admin",
        {"available_credits": 9},
    )
    assert entry["ip"] == "127.0.0.1" and entry["channel"] == "http"
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    none = await client.get(
        "/v1/audit-logs", params={"target_id": wid, "from": later}, headers=auditor
    )
    some = await client.get(
        "/v1/audit-logs", params={"target_id": wid, "from": earlier, "to": later}, headers=auditor
    )
    other = await client.get(
        "/v1/audit-logs", params={"target_id": wid, "action": "refund.requested"}, headers=auditor
    )
    assert [len(x.json()["data"]) for x in (none, some, other)] == [0, 1, 0]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2030-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"}, "audit_range_invalid"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "audit_range_invalid"),
        ({"from": "2030-01-01T00:00:00"}, "validation_error"),  # no offset
        ({"from": "0001-01-01T00:00:00+23:59"}, "validation_error"),
        ({"to": "yesterday"}, "validation_error"),
        ({"action": "DROP TABLE"}, "validation_error"),
        ({"actor": "a\x00b"}, "validation_error"),
        ({"target_type": "x" * 65}, "validation_error"),
        ({"target_id": "a b"}, "validation_error"),
        ({"limit": "0"}, "validation_error"),
        ({"limit": "201"}, "validation_error"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid_cursor"),
    ],
)
async def test_bad_filters_are_problems(
    client: httpx.AsyncClient, token: Callable[..., str], params: dict[str, str], code: str
) -> None:
    r = await client.get("/v1/audit-logs", params=params, headers=auth(token(Role.auditor)))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == code


async def test_a_cursor_of_another_list_is_refused(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    from commdesk_billing.pagination import encode_cursor

    foreign = encode_cursor("payees", datetime.now(UTC), uuid.uuid4())
    r = await client.get(
        "/v1/audit-logs", params={"cursor": foreign}, headers=auth(token(Role.auditor))
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"


@pytest.mark.slow
async def test_the_migration_goes_down_and_up_and_makes_sure_the_log_is_append_only(
    scratch_database_url: str,
) -> None:
    from alembic import command

    from commdesk_billing.db.migrate import alembic_config

    cfg = alembic_config(scratch_database_url)
    # A database restored without the refusals of 0001 gets them back from 0021.
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        await conn.execute("DROP TRIGGER audit_logs_append_only ON audit_logs")
        await conn.execute("DROP TRIGGER audit_logs_no_truncate ON audit_logs")
    finally:
        await conn.close()
    await asyncio.to_thread(command.downgrade, cfg, "0020")
    await asyncio.to_thread(command.upgrade, cfg, "head")
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        triggers = await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_logs'::regclass"
            " AND NOT tgisinternal ORDER BY tgname"
        )
        assert [t["tgname"] for t in triggers] == [
            "audit_logs_append_only",
            "audit_logs_no_truncate",
        ]
        await conn.execute(
            "INSERT INTO audit_logs (id, actor_sub, actor_role, action, target_type, target_id,"
            " ip, user_agent, channel, before, after) VALUES ($1, 'a', 'auditor', 'x', 't', 'i',"
            " '198.51.100.1', 'ua', 'cli', '{}', '{\"k\": 1}')",
            uuid.uuid4(),
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO audit_logs (id, actor_sub, actor_role, action, target_type,"
                " target_id, user_agent) VALUES ($1, 'a', 'auditor', 'x', 't', 'i', $2)",
                uuid.uuid4(),
                "u" * 513,
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_logs SET after = NULL")
    finally:
        await conn.close()
