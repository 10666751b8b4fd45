"""The auto-recharge routes: who may call them (tests/authz.py), strict bodies, the mandate
refusal, and the decision log's pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from tests.authz import AUTO_RECHARGE_ALLOW as ALLOW
from tests.authz import WALLET_CALLERS as CALLERS
from tests.conftest import auth, new_wallet
from tests.modules.autorecharge.conftest import debit, top_up
from tests.modules.wallet.test_api import _caller_headers

PROBLEM = "application/problem+json"
BODY = {"enabled": True, "pack_code": "pack_150", "customer_phone": "9876543210"}


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
    owner = auth(token("member", sub=owner_sub))
    url = f"/v1/wallets/{wallet.id}/auto-recharge"
    assert (await client.put(url, json={**BODY, "threshold": 50}, headers=owner)).status_code == 200
    method, path = route.split(" ")
    headers = _caller_headers(caller, owner_sub, token, settings)
    target = path.format(wallet_id=wallet.id)
    if method == "PUT":
        r = await client.put(target, json={**BODY, "threshold": 10}, headers=headers)
    else:
        r = await client.get(target, headers=headers)
    if caller in ("anonymous", "forged"):
        expected = 401
    elif caller in ALLOW[route]:
        expected = 200
    else:
        expected = 403
    assert r.status_code == expected, (route, caller, r.text)
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM
        seen = (await client.get(url, headers=owner)).json()
        assert seen["threshold"] == 50  # nothing changed


async def _owner(engine: AsyncEngine, token: Callable[..., str]) -> tuple[str, dict[str, str]]:
    sub = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 500, sub=sub)
    return str(wallet.id), auth(token("member", sub=sub))


async def test_put_sets_the_wallet_and_is_idempotent(
    engine: AsyncEngine, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    wid, owner = await _owner(engine, token)
    url = f"/v1/wallets/{wid}/auto-recharge"
    assert (await client.get(url, headers=owner)).status_code == 404
    first = await client.put(url, json={**BODY, "max_recharges_per_day": 2}, headers=owner)
    again = await client.put(url, json={**BODY, "max_recharges_per_day": 2}, headers=owner)
    assert first.status_code == again.status_code == 200
    drop = {"updated_at"}
    assert {k: v for k, v in first.json().items() if k not in drop} == {
        k: v for k, v in again.json().items() if k not in drop
    }
    body = again.json()
    assert (body["enabled"], body["threshold"], body["trigger_level"]) == (True, 200, 200)
    assert (body["pack_code"], body["max_recharges_per_day"], body["mandate_id"]) == (
        "pack_150",
        2,
        None,
    )
    seen = (await client.get(f"/v1/wallets/{wid}", headers=owner)).json()
    assert (seen["auto_recharge_enabled"], seen["auto_recharge_threshold"]) == (True, 200)
    off = await client.put(url, json={**BODY, "enabled": False, "threshold": 300}, headers=owner)
    assert (off.json()["enabled"], off.json()["trigger_level"]) == (False, None)
    seen = (await client.get(f"/v1/wallets/{wid}", headers=owner)).json()
    assert (seen["auto_recharge_enabled"], seen["auto_recharge_threshold"]) == (False, 300)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**BODY, "mandate_id": str(uuid.uuid4())}, 422, "auto_recharge_mandate_invalid"),
        ({**BODY, "pack_code": "pack_nope"}, 422, "auto_recharge_invalid"),
        (
            {**{k: v for k, v in BODY.items() if k != "pack_code"}, "amount_paise": 150},
            422,
            "auto_recharge_invalid",
        ),
        ({**BODY, "amount_paise": 50_000}, 422, "validation_error"),
        ({**BODY, "threshold": "200"}, 422, "validation_error"),
        ({**BODY, "enabled": "yes"}, 422, "validation_error"),
        ({**BODY, "threshold": -1}, 422, "validation_error"),
        ({**BODY, "max_consecutive_failures": 0}, 422, "validation_error"),
        ({**BODY, "surprise": 1}, 422, "validation_error"),
        ({k: v for k, v in BODY.items() if k != "customer_phone"}, 422, "validation_error"),
    ],
)
async def test_bad_settings_are_refused(
    body: dict[str, Any],
    status: int,
    code: str,
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    token: Callable[..., str],
) -> None:
    wid, owner = await _owner(engine, token)
    r = await client.put(f"/v1/wallets/{wid}/auto-recharge", json=body, headers=owner)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert (await client.get(f"/v1/wallets/{wid}/auto-recharge", headers=owner)).status_code == 404


async def test_an_unknown_wallet_is_a_404(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    member = auth(token("member"))
    url = f"/v1/wallets/{uuid.uuid4()}/auto-recharge"
    assert (await client.put(url, json=BODY, headers=member)).status_code == 404
    assert (await client.get(url + "/events", headers=member)).status_code == 404


async def test_the_decision_log_is_paged_newest_first(
    engine: AsyncEngine, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    wid, owner = await _owner(engine, token)
    await client.put(f"/v1/wallets/{wid}/auto-recharge", json=BODY, headers=owner)
    wallet_id = uuid.UUID(wid)
    await debit(engine, wallet_id, 400)  # 500 -> 100: fired
    await top_up(engine, wallet_id, 200)
    await debit(engine, wallet_id, 150)  # across again, one in flight: skipped
    url = f"/v1/wallets/{wid}/auto-recharge/events"
    seen: list[tuple[str, str | None]] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, params=params, headers=owner)).json()
        seen += [(d["decision"], d["reason"]) for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("skipped", "in_flight"), ("fired", None), ("configured", "enabled")]
    bad = await client.get(url, params={"cursor": "bm9wZTox"}, headers=owner)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")
