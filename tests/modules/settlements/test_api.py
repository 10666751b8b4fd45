"""The settlement routes in-process: every caller kind against the matrix (`tests/authz.py`
SETTLEMENT_ALLOW) on a community payee's settlement (its payable earned through real spends
over the API), hostile inputs answered with RFC 9457 problems that change nothing, and the
payout webhook receiver's refusals."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from commdesk_billing.config import Settings
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import SETTLEMENT_ALLOW, SETTLEMENT_CALLERS
from tests.conftest import auth, new_wallet
from tests.modules.settlements.helpers import make_payee, scalar, settle_run

_ROLES = {
    "member": Role.member,
    "owner_record": Role.member,
    "owner_claim": Role.community_owner,
    "owner_elsewhere": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}


class World:
    def __init__(self, settings: Settings, community: str, owner: str) -> None:
        self.settings, self.community = settings, community
        self.subs = {name: f"{name}-{uuid.uuid4().hex[:10]}" for name in SETTLEMENT_CALLERS}
        self.subs["owner_record"] = owner

    def headers(self, caller: str) -> dict[str, str]:
        key = uuid.uuid4().hex
        if caller == "anonymous":
            return {"Idempotency-Key": key}
        if caller == "forged":
            return auth("not.a.token", key)
        if caller == "service":
            return auth(issue_token(self.settings, sub="svc", role=Role.service), key)
        communities = {"owner_claim": [self.community], "owner_elsewhere": ["elsewhere"]}
        tok = issue_token(
            self.settings,
            sub=self.subs[caller],
            role=_ROLES[caller],
            communities=communities.get(caller),
        )
        return auth(tok, key)


@pytest.fixture(scope="module")
async def world(
    settings: Settings, engine: AsyncEngine, mongodb: Any, app: Any, payee_settings: Settings
) -> tuple[World, uuid.UUID, uuid.UUID]:
    """A community whose owner is `owner_record`, its payee, and one settlement of it made
    from spends in the community (nothing is sent: no worker runs on this database)."""
    from tests.harness.mongo import communities

    owner = f"owner-{uuid.uuid4().hex[:10]}"
    community = f"c-{uuid.uuid4().hex[:12]}"
    async with communities(mongodb) as coll:
        await coll.replace_one(
            {"_id": community},
            {"_id": community, "name": "Chess", "owner_ids": [owner], "status": "active"},
            upsert=True,
        )
    w = World(settings, community, owner)
    spender = f"member-{uuid.uuid4().hex[:8]}"
    await new_wallet(engine, 5000, sub=spender)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        tok = issue_token(settings, sub=spender, role=Role.member)
        r = await c.post(
            f"/v1/communities/{community}/spends",
            json={"credits": 5000, "reason": "a season's tournaments"},
            headers=auth(tok, uuid.uuid4().hex),
        )
        assert r.status_code == 201, r.text
    payee = await make_payee(engine, payee_settings, community_id=community)
    [outcome] = await settle_run(
        engine,
        settings,
        by="t",
        payee_id=payee.id,
        period=f"t:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    assert outcome.settlement is not None, outcome
    return w, payee.id, outcome.settlement.id


@pytest.mark.parametrize("route", sorted(SETTLEMENT_ALLOW))
async def test_every_caller_gets_what_the_matrix_says(
    route: str,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    world: tuple[World, uuid.UUID, uuid.UUID],
    payee_settings: Settings,
) -> None:
    w, payee_id, settlement_id = world
    method, path = route.split(" ", 1)
    for caller in SETTLEMENT_CALLERS:
        body = None
        if method == "POST":
            # A payee of its own with nothing earned: the run settles nothing.
            body = {"payee_id": str((await make_payee(engine, payee_settings)).id)}
        url = path.format(payee_id=payee_id, settlement_id=settlement_id)
        r = await client.request(method, url, json=body, headers=w.headers(caller))
        if caller in SETTLEMENT_ALLOW[route]:
            assert r.status_code in (200, 201), (route, caller, r.text)
        else:
            want = {"anonymous": 401, "forged": 401, "service": 403}.get(caller, 404)
            if method == "POST":
                want = 401 if caller in ("anonymous", "forged") else 403
            assert r.status_code == want, (route, caller, r.status_code, r.text)
            assert r.headers["content-type"] == MEDIA_TYPE


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    assert r.json()["code"] == code, r.json()


HOSTILE_RUNS: list[Any] = [
    {"payee_id": "not-a-uuid"},
    {"payee_id": 12},
    {"payee_id": None, "cut_off": "2026-01-01T00:00:00Z"},
    {"payee_id": "\u0000"},
    [],
    "run",
]


@pytest.mark.parametrize("body", HOSTILE_RUNS)
async def test_hostile_run_bodies_are_problems_and_settle_nothing(
    body: Any, client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    before = await scalar(engine, "SELECT count(*) FROM settlements")
    tok = issue_token(settings, sub="finance-1", role=Role.finance_admin)
    r = await client.post("/v1/settlements/runs", json=body, headers=auth(tok, uuid.uuid4().hex))
    _problem(r, 422, "validation_error")
    assert await scalar(engine, "SELECT count(*) FROM settlements") == before


async def test_a_run_needs_a_key_and_a_repeat_answers_as_the_first(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, payee_settings: Settings
) -> None:
    tok = issue_token(settings, sub="finance-1", role=Role.finance_admin)
    payee = await make_payee(engine, payee_settings)
    body = {"payee_id": str(payee.id)}
    r = await client.post("/v1/settlements/runs", json=body, headers=auth(tok))
    _problem(r, 400, "idempotency_key_required")
    key = uuid.uuid4().hex
    first = await client.post("/v1/settlements/runs", json=body, headers=auth(tok, key))
    again = await client.post("/v1/settlements/runs", json=body, headers=auth(tok, key))
    assert first.status_code == again.status_code == 201, first.text
    assert first.json() == again.json()
    [outcome] = first.json()["outcomes"]
    assert (outcome["created"], outcome["waiting"]) == (False, "nothing_payable")
    other = await client.post(
        "/v1/settlements/runs", json={"payee_id": str(uuid.uuid4())}, headers=auth(tok, key)
    )
    _problem(other, 422, "idempotency_key_reused")


async def test_hostile_reads_are_problems(client: httpx.AsyncClient, settings: Settings) -> None:
    h = auth(issue_token(settings, sub="finance-1", role=Role.finance_admin))
    _problem(await client.get("/v1/settlements/not-a-uuid", headers=h), 422, "validation_error")
    _problem(
        await client.get(f"/v1/settlements/{uuid.uuid4()}", headers=h), 404, "settlement_not_found"
    )
    _problem(
        await client.get(f"/v1/settlements/{uuid.uuid4()}/statement", headers=h),
        404,
        "settlement_not_found",
    )
    base = f"/v1/payees/{uuid.uuid4()}/settlements"
    for query in ("?limit=0", "?limit=201", "?limit=x", "?cursor=" + "x" * 201):
        _problem(await client.get(base + query, headers=h), 422, "validation_error")
    _problem(await client.get(base + "?cursor=bm90LWEtY3Vyc29y", headers=h), 422, "invalid_cursor")
    empty = await client.get(base, headers=h)
    assert empty.status_code == 200 and empty.json()["data"] == []


def _signed(body: bytes, secret: str, ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time() * 1000))
    return {
        "content-type": "application/json",
        "x-webhook-timestamp": ts,
        "x-webhook-signature": signature.sign(secret, ts, body),
        "x-webhook-version": "2024-01-01",
    }


async def test_the_payout_webhook_receiver_refuses_and_keeps_as_it_should(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, app: Any
) -> None:
    url = "/v1/webhooks/cashfree-payouts"
    transfer_id = f"stl{uuid.uuid4().hex}a1"
    body = json.dumps(
        {
            "type": "TRANSFER_SUCCESS",
            "event_time": "2026-12-06T12:00:00",
            "data": {
                "transfer_id": transfer_id,
                "cf_transfer_id": "123",
                "status": "SUCCESS",
                "status_code": "SENT_TO_BENEFICIARY",
                "transfer_amount": 100.0,
                "transfer_utr": "UTR1",
            },
        }
    ).encode()
    # Nested deeper than any Cashfree payload: refused before any signature check.
    deep = b'{"a":' * 40 + b"1" + b"}" * 40
    _problem(await client.post(url, content=deep, headers=_signed(deep, "x")), 400, "json_too_deep")
    # The suite's API has no Payouts pair: nothing can be checked, nothing is stored.
    _problem(
        await client.post(url, content=body, headers=_signed(body, DEV_PAYOUT_CLIENT_SECRET)),
        503,
        "payouts_not_configured",
    )
    payout_settings = settings.model_copy(
        update={"cashfree_payout_client_secret": SecretStr(DEV_PAYOUT_CLIENT_SECRET)}
    )
    app.state.settings = payout_settings
    try:
        stored = "SELECT count(*) FROM payout_webhooks WHERE transfer_id = :t"
        # Unsigned, signed with PG's secret, stale: 401, nothing stored.
        _problem(await client.post(url, content=body), 401, "webhook_unsigned")
        pg = settings.cashfree_client_secret.get_secret_value()
        r = await client.post(url, content=body, headers=_signed(body, pg))
        assert r.status_code == 401, r.text
        stale = _signed(body, DEV_PAYOUT_CLIENT_SECRET, ts=str(int(time.time() * 1000) - 10**9))
        assert (await client.post(url, content=body, headers=stale)).status_code == 401
        assert await scalar(engine, stored, t=transfer_id) == 0
        # Signed, for a transfer that is not ours: kept, answered 200, nothing sent.
        ok = await client.post(url, content=body, headers=_signed(body, DEV_PAYOUT_CLIENT_SECRET))
        assert (ok.status_code, ok.json()["status"]) == (200, "unknown_transfer"), ok.text
        dup = await client.post(url, content=body, headers=_signed(body, DEV_PAYOUT_CLIENT_SECRET))
        assert dup.json()["status"] == "duplicate"
        assert await scalar(engine, stored, t=transfer_id) == 1
        # Signed but unreadable: kept as rejected, answered 200 (a retry cannot change it).
        junk = b'{"type": "TRANSFER_SUCCESS", "data": {"status": 5}}'
        r = await client.post(url, content=junk, headers=_signed(junk, DEV_PAYOUT_CLIENT_SECRET))
        assert (r.status_code, r.json()["status"]) in ((200, "rejected"), (200, "duplicate"))
    finally:
        app.state.settings = settings


async def test_a_webhook_echoing_an_account_number_as_a_json_number_is_kept_masked(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, app: Any
) -> None:
    """Our model reads an account number sent as a JSON number (`TextId`); the body kept
    must mask it as it masks a string one: no account number is ever stored whole."""
    url = "/v1/webhooks/cashfree-payouts"
    transfer_id = f"stl{uuid.uuid4().hex}a1"
    number = 50100000000017
    for i, instrument in enumerate(
        (
            {"bank_account_number": number, "bank_ifsc": "HDFC0000001"},
            {"bank_account_number": [number], "vpa": 9876543210},
        )
    ):
        body = json.dumps(
            {
                "type": "TRANSFER_SUCCESS",
                "event_time": "2026-12-06T12:00:00",
                "data": {
                    "transfer_id": transfer_id,
                    "cf_transfer_id": f"12{i}",
                    "status": "SUCCESS",
                    "status_code": "COMPLETED",
                    "transfer_amount": 100.0,
                    "transfer_utr": "UTR1",
                    "beneficiary_details": {
                        "beneficiary_id": "b1",
                        "beneficiary_instrument_details": instrument,
                    },
                },
            }
        ).encode()
        app.state.settings = settings.model_copy(
            update={"cashfree_payout_client_secret": SecretStr(DEV_PAYOUT_CLIENT_SECRET)}
        )
        try:
            with capture_logs() as logs:
                r = await client.post(
                    url, content=body, headers=_signed(body, DEV_PAYOUT_CLIENT_SECRET)
                )
        finally:
            app.state.settings = settings
        assert r.status_code == 200, r.text
        # The second is unreadable (a list): why is logged and kept, the number hidden.
        assert str(number) not in repr(logs) and "9876543210" not in repr(logs), logs
    raws = await scalar(
        engine,
        "SELECT string_agg(convert_from(raw_body, 'UTF8') || outcome, ' ') FROM payout_webhooks "
        "WHERE strpos(convert_from(raw_body, 'UTF8'), :t) > 0",
        t=transfer_id,
    )
    assert raws.count("XXXX0017") >= 2 and "rejected" in raws, raws
    assert str(number) not in raws and "9876543210" not in raws, raws
