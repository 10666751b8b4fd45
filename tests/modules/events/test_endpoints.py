"""The endpoints' routes: who may call them, what a URL may be, the secret shown once and
kept sealed, every change audited (`audit_logs`), replays; and the pull API's pages."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.modules.events import sealing, sender, urls
from commdesk_billing.modules.events.jobs import deliver_due
from commdesk_billing.modules.events.model import Delivery, DeliveryStatus, Event, Outgoing
from commdesk_billing.security.jwt import Role
from tests.authz import EVENTS_ALLOW, EVENTS_CALLERS
from tests.conftest import auth
from tests.modules.events.conftest import Endpoints, Receiver, consume, credited, member


async def _audit(engine: AsyncEngine, target_id: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT action, request_id FROM audit_logs
                         WHERE target_id = :t ORDER BY created_at, id"""),
                {"t": target_id},
            )
        ).all()
    return [(r.action, r.request_id) for r in rows]


async def test_an_endpoint_lives_and_dies_with_each_change_audited(
    engine: AsyncEngine,
    settings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "description": "ledger sync", "event_types": ["payment.paid"]},
        headers=endpoints.headers("req-create"),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    endpoints.made.append(uuid.UUID(made["id"]))
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert (made["enabled"], made["event_types"], made["created_by"]) == (
        True,
        ["payment.paid"],
        "fin-webhooks",
    )
    # Kept sealed: the column holds no trace of the secret, and the key opens it.
    async with engine.connect() as conn:
        sealed = await conn.scalar(
            text("SELECT secret_sealed FROM webhook_endpoints WHERE id = :i"), {"i": made["id"]}
        )
    assert secret not in sealed and secret[6:20] not in sealed
    assert sealing.open_sealed(settings, sealed) == secret

    # Never shown again.
    got = await client.get(f"/v1/webhook-endpoints/{made['id']}", headers=endpoints.headers())
    assert got.status_code == 200 and "secret" not in got.json()
    listed = await client.get("/v1/webhook-endpoints", headers=endpoints.headers())
    assert made["id"] in {e["id"] for e in listed.json()["data"]}
    assert all("secret" not in e for e in listed.json()["data"])

    r = await client.patch(
        f"/v1/webhook-endpoints/{made['id']}",
        json={"enabled": False, "event_types": ["refund.failed", "payment.failed"]},
        headers=endpoints.headers("req-update"),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["event_types"]) == (
        False,
        ["payment.failed", "refund.failed"],
    )
    r = await client.post(
        f"/v1/webhook-endpoints/{made['id']}/rotate-secret", headers=endpoints.headers("req-rot")
    )
    assert r.status_code == 200
    rotated = r.json()["secret"]
    assert rotated != secret and rotated.startswith("whsec_")
    async with engine.connect() as conn:
        sealed = await conn.scalar(
            text("SELECT secret_sealed FROM webhook_endpoints WHERE id = :i"), {"i": made["id"]}
        )
    assert sealing.open_sealed(settings, sealed) == rotated

    r = await client.delete(
        f"/v1/webhook-endpoints/{made['id']}", headers=endpoints.headers("req-del")
    )
    assert r.status_code == 204
    r = await client.get(f"/v1/webhook-endpoints/{made['id']}", headers=endpoints.headers())
    assert (r.status_code, r.json()["code"]) == (404, "webhook_endpoint_not_found")

    assert await _audit(engine, made["id"]) == [
        ("webhook_endpoint.created", "req-create"),
        ("webhook_endpoint.updated", "req-update"),
        ("webhook_endpoint.secret_rotated", "req-rot"),
        ("webhook_endpoint.deleted", "req-del"),
    ]
    # No audit entry carries a secret.
    async with engine.connect() as conn:
        dumped = await conn.scalar(
            text(
                "SELECT string_agg(to_jsonb(a)::text, ' ') FROM audit_logs a WHERE target_id = :t"
            ),
            {"t": made["id"]},
        )
    assert secret not in dumped and rotated not in dumped


async def test_a_replay_sends_the_same_event_again_and_is_audited(
    engine: AsyncEngine,
    settings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    endpoint = await endpoints.create(receiver)
    user_id, _ = await member(engine)
    await consume(engine, settings, credited(user_id))
    assert (await deliver_due(engine, settings)).succeeded == 1
    base = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
    (d,) = (await client.get(base, headers=endpoints.headers())).json()["data"]

    r = await client.post(f"{base}/{d['id']}/replay", headers=endpoints.headers("req-replay"))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attempts"]) == ("pending", 1)
    assert (await deliver_due(engine, settings)).succeeded == 1

    first, second = receiver.received
    assert first.verified and second.verified
    assert first.headers["CommDesk-Event-Id"] == second.headers["CommDesk-Event-Id"]
    assert len(receiver.handled) == 1  # the receiver dropped the repeat by its event id
    (d,) = (await client.get(base, headers=endpoints.headers())).json()["data"]
    assert (d["status"], d["attempts"]) == ("succeeded", 2)
    assert await _audit(engine, d["id"]) == [("webhook_delivery.replayed", "req-replay")]

    # Another endpoint's delivery, or none: 404; a disabled endpoint: 409.
    r = await client.post(f"{base}/{uuid.uuid4()}/replay", headers=endpoints.headers())
    assert (r.status_code, r.json()["code"]) == (404, "webhook_delivery_not_found")
    await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}",
        json={"enabled": False},
        headers=endpoints.headers(),
    )
    r = await client.post(f"{base}/{d['id']}/replay", headers=endpoints.headers())
    assert (r.status_code, r.json()["code"]) == (409, "webhook_endpoint_disabled")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hooks",
        "http://hooks.example.com/billing",  # plain http off loopback
        "https://user:pw@hooks.example.com/billing",
        "https://hooks.example.com/billing#frag",
        "https:///no-host",
        "not a url",
        "https://hooks.example.com:0/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:abc/",
        "https://[::1/hooks",
        "https://hooks example.com/",
        "https://hooks.example.com/\u0007",
        "http://[::2]/hooks",
    ],
)
async def test_a_bad_url_is_a_400_problem(
    url: str, client: httpx.AsyncClient, endpoints: Endpoints
) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=endpoints.headers())
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "webhook_url_refused"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/b", "event_types": ["payment.teleported"]},
        {"url": "https://hooks.example.com/b", "event_types": ["payment.paid", "payment.paid"]},
        {"url": "https://hooks.example.com/b", "secret": "mine"},
        {"url": "https://hooks.example.com/" + "a" * 2048},
        {},
    ],
)
async def test_a_bad_body_is_a_422_problem(
    body: dict[str, Any], client: httpx.AsyncClient, endpoints: Endpoints
) -> None:
    r = await client.post("/v1/webhook-endpoints", json=body, headers=endpoints.headers())
    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.8/hooks",
        "https://192.168.1.1/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://0.0.0.0/hooks",
        "https://224.0.0.1/hooks",
        "http://8.8.8.8/hooks",
        "http://127.0.0.1/hooks",
    ],
)
def test_production_refuses_our_own_network(url: str, settings: Settings) -> None:
    production = settings.model_copy(update={"env": Environment.production})
    with pytest.raises(urls.UrlRefused):
        urls.parse(production, url)


async def test_odd_but_valid_urls_are_taken_outside_production(
    client: httpx.AsyncClient, endpoints: Endpoints
) -> None:
    for url in ("https://ü.example/hooks", "http://[::1]:8080/hooks", "HTTPS://Hooks.Example.COM"):
        r = await client.post(
            "/v1/webhook-endpoints", json={"url": url}, headers=endpoints.headers()
        )
        assert r.status_code == 201, (url, r.text)
        endpoints.made.append(uuid.UUID(r.json()["id"]))


async def test_production_refuses_a_name_that_resolves_to_loopback(settings: Settings) -> None:
    production = settings.model_copy(update={"env": Environment.production})
    urls.parse(production, "https://8.8.8.8/hooks")  # a public literal is fine
    # Not IP literals to `ipaddress`, so they pass the form check; the resolver reads each
    # as 127.0.0.1, and that is what is checked.
    for sneaky in ("127.1", "2130706433", "0x7f.0.0.1"):
        urls.parse(production, f"https://{sneaky}/hooks")
        with pytest.raises(urls.UrlRefused, match="public addresses only"):
            await urls.check_resolved(production, f"https://{sneaky}/hooks")
    with pytest.raises(urls.UrlRefused, match="does not resolve"):
        await urls.check_resolved(production, "https://no-such-host.invalid/hooks")
    with pytest.raises(urls.UrlRefused, match="does not resolve"):
        await urls.check_resolved(production, "https://" + "a" * 70 + ".example/hooks")


def test_production_has_no_default_sealing_key(settings: Settings) -> None:
    production = settings.model_copy(update={"env": Environment.production})
    with pytest.raises(sealing.SealingUnavailable):
        sealing.seal(production, "whsec_x")


_WALK_BODIES: dict[str, Any] = {
    "POST /v1/webhook-endpoints": {"url": "ftp://hooks.example.com/"},
    "PATCH /v1/webhook-endpoints/{endpoint_id}": {"enabled": False},
}


async def test_each_caller_gets_what_the_matrix_says(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    tokens: dict[str, str | None] = {
        "member": token(Role.member),
        "community_owner": token(Role.community_owner),
        "finance_admin": token(Role.finance_admin),
        "support": token(Role.support),
        "auditor": token(Role.auditor),
        "service_events": token(Role.service, scopes=["events:read"]),
        "service_webhooks": token(Role.service, scopes=["webhooks:manage"]),
        "service_other": token(Role.service, scopes=["wallets:read", "usage:read"]),
        "anonymous": None,
        "forged": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    }
    assert set(tokens) == set(EVENTS_CALLERS)
    for route, allowed in EVENTS_ALLOW.items():
        method, path = route.split(" ", 1)
        url = path.replace("{endpoint_id}", str(uuid.uuid4())).replace(
            "{delivery_id}", str(uuid.uuid4())
        )
        url = url.replace("{event_id}", str(uuid.uuid4()))
        for caller, tok in tokens.items():
            headers = auth(tok, uuid.uuid4().hex) if tok else {}
            # Valid bodies (a body FastAPI refuses is a 422 before the rule runs), none that
            # would make anything: an allowed caller gets the route's own refusal.
            body = _WALK_BODIES.get(route)
            r = await client.request(method, url, json=body, headers=headers)
            if caller in allowed:
                # Past authorization: 404 for a made-up id, 400 for the ftp URL, 200 lists.
                assert r.status_code in (200, 400, 404), (route, caller, r.text)
            elif caller in ("anonymous", "forged"):
                assert r.status_code == 401, (route, caller)
            else:
                assert r.status_code == 403, (route, caller, r.text)


async def test_events_are_pulled_newest_first_by_cursor_type_and_time(
    engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    reader = auth(token(Role.auditor))
    user_id, sub = await member(engine)
    since = datetime.now(UTC)
    envelopes = [credited(user_id) for _ in range(3)]
    for e in envelopes:
        await consume(engine, settings, e)
    mine = {e.payload["payment_id"] for e in envelopes}

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {
            "type": "payment.credited",
            "created_after": since.isoformat(),
            "limit": 2,
        }
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/events", params=params, headers=reader)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [e["data"]["payment_id"] for e in page["data"] if e["data"]["user"] == sub]
        assert all(e["type"] == "payment.credited" for e in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Newest first: the reverse of the order they were recorded in.
    assert seen == [e.payload["payment_id"] for e in reversed(envelopes)]
    assert set(seen) == mine

    # Nothing after the newest; a bad cursor and a time without offset are 422 problems.
    r = await client.get(
        "/v1/events",
        params={"created_after": datetime.now(UTC).isoformat()},
        headers=reader,
    )
    assert all(e["data"].get("user") != sub for e in r.json()["data"])
    r = await client.get("/v1/events", params={"cursor": "bm9wZQ"}, headers=reader)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_cursor")
    r = await client.get("/v1/events", params={"created_after": "2026-01-01T00:00"}, headers=reader)
    assert r.status_code == 422
    r = await client.get("/v1/events", params={"type": "payment.teleported"}, headers=reader)
    assert r.status_code == 422
    r = await client.get(f"/v1/events/{uuid.uuid4()}", headers=reader)
    assert (r.status_code, r.json()["code"]) == (404, "event_not_found")


async def test_a_retried_create_makes_one_endpoint_and_keeps_the_secret_sealed(
    engine: AsyncEngine,
    settings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
    token: Callable[..., str],
) -> None:
    """A POST retried after a lost answer (same caller, same Idempotency-Key) answers as the
    first did, secret included, and makes no second endpoint; the stored answer keeps the
    secret sealed, never in the clear. Without a key: 400; another caller's same key is
    another request."""
    receiver = make_receiver()
    body = {"url": receiver.url, "description": "retried", "event_types": ["refund.failed"]}
    missing = await client.post(
        "/v1/webhook-endpoints",
        json=body,
        headers=auth(token(Role.finance_admin, sub="fin-webhooks")),
    )
    assert (missing.status_code, missing.json()["code"]) == (400, "idempotency_key_required")

    key = f"create-{uuid.uuid4().hex}"
    first = await client.post(
        "/v1/webhook-endpoints", json=body, headers=endpoints.headers(key=key)
    )
    assert first.status_code == 201, first.text
    made = first.json()
    endpoints.made.append(uuid.UUID(made["id"]))
    again = await client.post(
        "/v1/webhook-endpoints", json=body, headers=endpoints.headers(key=key)
    )
    assert again.status_code == 201, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == made
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM webhook_endpoints WHERE description = 'retried'")
        )
        stored = await conn.scalar(
            text("SELECT CAST(response_body AS text) FROM idempotency_keys WHERE key = :k"),
            {"k": key},
        )
    assert count == 1
    assert (
        stored is not None and made["secret"] not in stored and made["secret"][6:20] not in stored
    )

    other = await client.post(
        "/v1/webhook-endpoints",
        json=body,
        headers=auth(token(Role.finance_admin, sub="fin-other"), key),
    )
    assert other.status_code == 201, other.text
    endpoints.made.append(uuid.UUID(other.json()["id"]))
    assert other.json()["id"] != made["id"] and other.json()["secret"] != made["secret"]


async def test_production_connects_only_to_the_address_it_checked(
    wsettings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that resolves to a public address when checked and to loopback
    a moment later (TTL 0) must not get a connection into our network: the address the POST
    connects to is the one found public, checked at connect time."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio asks in bytes
        if name != "rebind.example":
            return await real(host, *args, **kwargs)
        asked.append(name)
        ip = "93.184.216.34" if len(asked) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    production = wsettings.model_copy(
        update={
            "env": Environment.production,
            "webhook_secret_keys": SecretStr(Fernet.generate_key().decode()),
        }
    )
    event = Event(
        id=uuid.uuid4(),
        event_type="refund.succeeded",
        data={},
        occurred_at=datetime.now(UTC),
        created_at=datetime.now(UTC),
    )
    now = datetime.now(UTC)
    delivery = Delivery(
        id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        event_id=event.id,
        event_type=event.event_type,
        status=DeliveryStatus.pending,
        attempts=1,
        next_attempt_at=now,
        give_up_at=now,
        last_status_code=None,
        last_error=None,
        delivered_at=None,
        created_at=now,
        updated_at=now,
    )
    sealed = sealing.seal(production, "whsec_production")
    try:
        async with sender.client(production) as http:
            out = await sender.post(
                production,
                http,
                Outgoing(delivery, f"https://rebind.example:{port}/h", sealed, event),
            )
    finally:
        server.close()
        await server.wait_closed()
    assert len(asked) >= 2  # resolved again when connecting
    assert connections == []
    assert not out.succeeded and out.error == "the URL's host must resolve to public addresses only"
