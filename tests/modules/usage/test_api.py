"""The usage routes in-process: every caller kind against the matrix (`tests/authz.py`
USAGE_ALLOW), the summary's figures per month and day, and hostile input answered with RFC
9457 problems."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import USAGE_ALLOW, USAGE_CALLERS
from tests.conftest import auth
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]

_ROLES = {
    "other_member": Role.member,
    "community_owner": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}
_SCOPES = {
    "service_usage_read": ["usage:read"],
    "service_usage_write": ["usage:write"],
    "service_none": ["wallets:read"],
}


def _headers(usage: Usage, caller: str, owner_sub: str) -> dict[str, str]:
    key = uuid.uuid4().hex
    if caller == "anonymous":
        return {"Idempotency-Key": key}
    if caller == "forged":
        return auth("not.a.token", key)
    if caller in _SCOPES:
        return auth(
            issue_token(
                usage.settings, sub=f"{caller}-svc", role=Role.service, scopes=_SCOPES[caller]
            ),
            key,
        )
    if caller == "owner":
        return auth(issue_token(usage.settings, sub=owner_sub, role=Role.member), key)
    return auth(issue_token(usage.settings, sub=f"{caller}-1", role=_ROLES[caller]), key)


@pytest.mark.parametrize("route", sorted(USAGE_ALLOW))
async def test_every_caller_gets_the_answer_the_matrix_names(
    route: str, usage: Usage, make_wallet: MakeWallet
) -> None:
    sub = f"user-{uuid.uuid4().hex}"
    wallet = await make_wallet(1000, sub=sub)
    meter = usage.meter()
    await usage.price(meter)
    method, path = route.split(" ", 1)
    allowed = USAGE_ALLOW[route]
    for caller in USAGE_CALLERS:
        body: Any = None
        params: dict[str, str] = {}
        if route == "POST /v1/usage/events":
            body = {"events": [event(uuid.uuid4().hex, meter, 1, wallet.id, datetime.now(UTC))]}
        elif route == "POST /v1/usage/price-book":
            body = {
                "meter": usage.meter(),
                "tiers": [{"up_to": None, "millicredits_per_unit": 5}],
                "reason": "matrix",
            }
        elif route == "GET /v1/usage/price-book":
            params = {"meter": meter}
        else:
            params = {"wallet_id": str(wallet.id)}
        r = await usage.client.request(
            method, path, json=body, params=params, headers=_headers(usage, caller, sub)
        )
        if caller in allowed:
            assert r.status_code in (200, 201), (caller, r.text)
        elif caller in ("anonymous", "forged"):
            assert r.status_code == 401, caller
        else:
            assert r.status_code == 403, (caller, r.text)
            assert r.headers["content-type"] == MEDIA_TYPE
            assert r.json()["code"] == "forbidden"


async def test_the_summary_adds_up_per_month_and_day(usage: Usage, make_wallet: MakeWallet) -> None:
    wallet = await make_wallet(1000)
    meter, other = usage.meter(), usage.meter()
    await usage.price(meter, [(None, 2500)])  # 2.5 credits a unit
    await usage.price(other, [(None, 1000)], policy="overdraft", limit=1000)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(seconds=1)
    await usage.accepted(
        [
            event("a", meter, 1, wallet.id, yesterday),  # 2.5 → 3 (half up)
            event("b", meter, 1, wallet.id, today),  # 5.0 → 5: 2
            event("c", meter, 3, wallet.id, today),  # 12.5 → 13: 8
            event("d", other, 7, wallet.id, today),
        ]
    )
    days = await usage.summary(
        wallet.id,
        granularity="day",
        **{"from": yesterday.date().isoformat(), "to": today.date().isoformat()},
    )
    assert [
        (p["period_start"], p["meter"], p["units"], p["credits"], p["events"])
        for p in days["periods"]
    ] == sorted(
        [
            (yesterday.date().isoformat(), meter, 1, 3, 1),
            (today.date().isoformat(), meter, 4, 10, 2),
            (today.date().isoformat(), other, 7, 7, 1),
        ],
        key=lambda p: (p[0], p[1]),
    )
    assert (days["units"], days["credits"], days["events"]) == (12, 20, 4)
    assert days["debt_outstanding_credits"] == 0
    one = await usage.summary(
        wallet.id,
        meter=meter,
        **{"from": yesterday.date().isoformat(), "to": today.date().isoformat()},
    )
    # By month: the month's charge is round-half-up of its exact total (12.5 → 13).
    assert sum(p["credits"] for p in one["periods"]) == 13
    assert {p["meter"] for p in one["periods"]} == {meter}
    # The owner reads it too.
    assert (await usage.figures(wallet.id)).available == 1000 - 20


async def test_summary_and_price_book_problems(usage: Usage, make_wallet: MakeWallet) -> None:
    wallet = await make_wallet(0)
    reader = auth(usage.service(("usage:read",)))
    finance = auth(usage.finance(), uuid.uuid4().hex)
    for params, code in (
        ({"wallet_id": "nope"}, "validation_error"),
        ({"wallet_id": str(wallet.id), "granularity": "year"}, "validation_error"),
        (
            {"wallet_id": str(wallet.id), "from": "2026-02-01", "to": "2026-01-01"},
            "usage_window_invalid",
        ),
        (
            {
                "wallet_id": str(wallet.id),
                "granularity": "day",
                "from": "2020-01-01",
                "to": "2026-01-01",
            },
            "usage_window_invalid",
        ),
        ({"wallet_id": str(uuid.uuid4())}, "not_found"),
    ):
        r = await usage.client.get("/v1/usage/summary", params=params, headers=reader)
        assert r.headers["content-type"] == MEDIA_TYPE
        assert r.json()["code"] == code, params
    r = await usage.client.get("/v1/usage/price-book", params={"meter": "m.none"}, headers=reader)
    assert (r.status_code, r.json()["code"]) == (404, "usage_meter_not_found")
    good = {
        "meter": usage.meter(),
        "tiers": [{"up_to": None, "millicredits_per_unit": 1}],
        "reason": "x",
    }
    for bad in (
        {**good, "tiers": []},
        {**good, "tiers": [{"up_to": 10, "millicredits_per_unit": 1}]},  # last tier bounded
        {
            **good,
            "tiers": [
                {"up_to": 10, "millicredits_per_unit": 1},
                {"up_to": 5, "millicredits_per_unit": 1},
                {"up_to": None, "millicredits_per_unit": 1},
            ],
        },
        {**good, "tiers": [{"up_to": None, "millicredits_per_unit": 1.5}]},
        {**good, "tiers": [{"up_to": None, "millicredits_per_unit": -1}]},
        {**good, "on_insufficient": "reject", "overdraft_limit_credits": 5},
        {**good, "on_insufficient": "maybe"},
    ):
        r = await usage.client.post(
            "/v1/usage/price-book",
            json=bad,
            headers={**finance, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad
    r = await usage.client.post(
        "/v1/usage/price-book", json=good, headers={"Authorization": finance["Authorization"]}
    )
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_required")
