"""The analytics routes' rows of the authorization matrix (`tests/authz.py`
ANALYTICS_ALLOW), walked in process against every caller kind, and their query validation:
a bad period or format is a 400 problem, never a 422 or a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from commdesk_billing.security.jwt import Role
from tests.authz import ANALYTICS_ALLOW, AUDIT_CALLERS
from tests.conftest import auth

PROBLEM = "application/problem+json"
PERIOD = {"from": "2026-11-01", "to": "2026-11-30"}


def _path(route: str) -> str:
    return route.split(" ", 1)[1]


def _headers(caller: str, token: Callable[..., str]) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller == "forged":
        return auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    return auth(token(Role(caller)))


@pytest.mark.parametrize("caller", AUDIT_CALLERS)
@pytest.mark.parametrize("route", sorted(ANALYTICS_ALLOW))
async def test_who_reads_analytics(
    route: str, caller: str, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    r = await client.get(_path(route), params=PERIOD, headers=_headers(caller, token))
    if caller in ("anonymous", "forged"):
        expected = 401
    elif caller in ANALYTICS_ALLOW[route]:
        expected = 200
    else:
        expected = 403
    assert r.status_code == expected, (caller, r.text)
    if expected != 200:
        assert r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "`from` is required"),
        ({"from": "2026-11-01"}, "`to` is required"),
        ({"from": "2026-13-01", "to": "2026-12-01"}, "not a calendar date"),
        ({"from": "01/11/2026", "to": "2026-12-01"}, "YYYY-MM-DD"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "`from` is after `to`"),
        ({"from": "2025-01-01", "to": "2026-11-30"}, "at most 366"),
        ({"from": "2999-01-01", "to": "2999-01-02"}, "in the future"),
        ({"from": "1999-12-31", "to": "2000-01-01"}, "before 2000"),
        ({"from": "2026-11-01", "to": "2026-11-01\x00"}, "YYYY-MM-DD"),
    ],
)
@pytest.mark.parametrize("route", sorted(ANALYTICS_ALLOW))
async def test_a_bad_period_is_a_400_problem(
    route: str,
    params: dict[str, str],
    detail: str,
    client: httpx.AsyncClient,
    token: Callable[..., str],
) -> None:
    r = await client.get(_path(route), params=params, headers=auth(token(Role.auditor)))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "invalid_period" and detail in r.json()["detail"]


@pytest.mark.parametrize(
    "route",
    [
        "GET /v1/analytics/daily",
        "GET /v1/analytics/payments",
        "GET /v1/analytics/trial-balance",
        "GET /v1/analytics/gst-summary",
    ],
)
async def test_a_bad_format_is_a_400_problem_and_csv_is_csv(
    route: str, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    headers = auth(token(Role.finance_admin))
    r = await client.get(_path(route), params={**PERIOD, "format": "xml"}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "invalid_report_format", r.text
    r = await client.get(_path(route), params={**PERIOD, "format": "csv"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.count("\r\n") >= 1


async def test_a_year_is_allowed_and_every_day_is_present(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    r = await client.get(
        "/v1/analytics/daily",
        params={"from": "2024-01-01", "to": "2024-12-31"},
        headers=auth(token(Role.auditor)),
    )
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    assert len(days) == 366 and days[0]["day"] == "2024-01-01" and days[-1]["day"] == "2024-12-31"
