"""What every API call passes through: credentials, version, headers, idempotency, rate limits,
injected 5xx and latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.gateway.sandbox.conftest import AUTH, CLIENT_ID, CLIENT_SECRET, unique
from tests.gateway.sandbox.helpers import create_order
from tests.gateway.sandbox.strict_models import ErrorBody, OrderEntity, parse


def order_body(order_id: str, amount: object = 100) -> dict[str, object]:
    return {
        "order_id": order_id,
        "order_amount": amount,
        "order_currency": "INR",
        "customer_details": {"customer_id": "customer_42", "customer_phone": "9999999999"},
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-version": "2025-01-01"},
        {"x-client-id": CLIENT_ID, "x-client-secret": "wrong", "x-api-version": "2025-01-01"},
        {
            "x-client-id": "TEST_other",
            "x-client-secret": CLIENT_SECRET,
            "x-api-version": "2025-01-01",
        },
    ],
)
async def test_bad_credentials_are_401(sandbox_url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        response = await client.post("/pg/orders", json=order_body(unique("o")), headers=headers)
        fetch = await client.get("/pg/orders/anything", headers=headers)
        control = await client.get("/_sandbox/webhooks", headers=headers)
    for r in (response, fetch, control):
        assert r.status_code == 401
        error = parse(ErrorBody, r.content)
        assert error.type == "authentication_error"


@pytest.mark.parametrize("version", [None, "", "2022-09-01", "yesterday"])
async def test_missing_or_unknown_version_is_400(sandbox_url: str, version: str | None) -> None:
    headers = {"x-client-id": CLIENT_ID, "x-client-secret": CLIENT_SECRET}
    if version is not None:
        headers["x-api-version"] = version
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as client:
        response = await client.post("/pg/orders", json=order_body(unique("o")))
    assert response.status_code == 400
    error = parse(ErrorBody, response.content)
    assert (error.code, error.type) == ("version_missing", "invalid_request_error")


@pytest.mark.parametrize("version", ["2023-08-01", "2025-01-01", "2026-01-01"])
async def test_accepted_versions_get_the_same_shapes_and_headers(
    sandbox_url: str, version: str
) -> None:
    headers = AUTH | {"x-api-version": version, "x-request-id": f"req-{version}"}
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as client:
        response = await client.post("/pg/orders", json=order_body(unique("o"), 10.5))
    assert response.status_code == 200
    assert response.headers["x-request-id"] == f"req-{version}"
    assert response.headers["x-api-version"] == version
    assert response.headers["content-type"] == "application/json"
    assert b'"order_amount":10.50' in response.content
    parse(OrderEntity, response.content)


async def test_unknown_path_gets_cashfrees_bad_url_body(api: httpx.AsyncClient) -> None:
    response = await api.get("/pg/no/such/thing")
    assert response.status_code == 404
    error = parse(ErrorBody, response.content)
    assert error.message == "bad URL, please check API documentation"


async def test_idempotency_key_replays_the_first_answer(api: httpx.AsyncClient) -> None:
    key = unique("idem")
    body = order_body(unique("o"))
    first = await api.post("/pg/orders", json=body, headers={"x-idempotency-key": key})
    # Same request, keys in another order: a replay, not a 409 for the duplicate order_id.
    reordered = dict(reversed(list(body.items())))
    again = await api.post("/pg/orders", json=reordered, headers={"x-idempotency-key": key})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["x-idempotency-replayed"] == "true"
    # Without the key the same order id is a duplicate.
    duplicate = await api.post("/pg/orders", json=body)
    assert duplicate.status_code == 409
    assert parse(ErrorBody, duplicate.content).type == "invalid_request_error"


async def test_idempotency_key_with_another_body_is_422(api: httpx.AsyncClient) -> None:
    key = unique("idem")
    first = await api.post(
        "/pg/orders", json=order_body(unique("o")), headers={"x-idempotency-key": key}
    )
    assert first.status_code == 200
    other = await api.post(
        "/pg/orders", json=order_body(unique("o")), headers={"x-idempotency-key": key}
    )
    assert other.status_code == 422
    assert parse(ErrorBody, other.content).type == "idempotency_error"


async def test_idempotency_replays_failures_too(api: httpx.AsyncClient) -> None:
    key = unique("idem")
    bad = order_body(unique("o"), amount=0.5)
    first = await api.post("/pg/orders", json=bad, headers={"x-idempotency-key": key})
    again = await api.post("/pg/orders", json=bad, headers={"x-idempotency-key": key})
    assert first.status_code == again.status_code == 400
    assert first.content == again.content


async def test_rate_limit_headers_and_429(start_sandbox: Callable[..., str]) -> None:
    # Cashfree sandbox numbers scaled down: create order 30/min * 0.1 = 3 per minute.
    url = start_sandbox(rate_limit_profile="sandbox", rate_limit_multiplier=0.1)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        answers = [await client.post("/pg/orders", json=order_body(unique("o"))) for _ in range(4)]
        fetch = await client.get(f"/pg/orders/{unique('o')}")
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    for r in answers:
        assert r.headers["x-ratelimit-limit"] == "3"
        assert r.headers["x-ratelimit-type"] == "app_id"
    assert answers[0].headers["x-ratelimit-retry"] == "0"
    assert 0 < int(answers[3].headers["x-ratelimit-retry"]) <= 60
    assert parse(ErrorBody, answers[3].content).type == "rate_limit_error"
    # Other endpoints keep their own window (get order: 60 * 0.1 = 6).
    assert fetch.status_code == 404
    assert fetch.headers["x-ratelimit-limit"] == "6"


async def test_rate_limits_can_be_switched_at_run_time(start_sandbox: Callable[..., str]) -> None:
    url = start_sandbox()
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        off = await client.get(f"/pg/orders/{unique('o')}")
        assert "x-ratelimit-limit" not in off.headers
        switched = await client.patch("/_sandbox/rate-limits", json={"profile": "production"})
        assert switched.json() == {"profile": "production", "multiplier": 1.0, "window_s": 60.0}
        on = await client.get(f"/pg/orders/{unique('o')}")
    assert on.headers["x-ratelimit-limit"] == "400"


async def test_injected_5xx_is_cashfrees_api_error(api: httpx.AsyncClient) -> None:
    faults = await api.patch("/_sandbox/faults", json={"error_rate": 1})
    assert faults.json()["error_rate"] == 1
    order_id = unique("o")
    response = await api.post("/pg/orders", json=order_body(order_id))
    assert response.status_code == 500
    assert parse(ErrorBody, response.content).type == "api_error"
    await api.patch("/_sandbox/faults", json={"error_rate": 0})
    # Nothing was done: the order does not exist.
    assert (await api.get(f"/pg/orders/{order_id}")).status_code == 404


async def test_half_the_calls_fail_at_error_rate_one_half(api: httpx.AsyncClient) -> None:
    await api.patch("/_sandbox/faults", json={"error_rate": 0.5})
    codes = [(await api.get(f"/pg/orders/{unique('o')}")).status_code for _ in range(40)]
    assert set(codes) == {404, 500}
    assert 8 <= codes.count(500) <= 32


async def test_added_latency(api: httpx.AsyncClient) -> None:
    await api.patch("/_sandbox/faults", json={"latency_ms": 300})
    started = time.monotonic()
    await create_order(api)
    assert time.monotonic() - started >= 0.3


async def test_fault_settings_are_validated(api: httpx.AsyncClient) -> None:
    response = await api.patch("/_sandbox/faults", json={"webhook_drop_rate": -1})
    assert response.status_code == 400
    assert parse(ErrorBody, response.content).code == "request_invalid"
    assert (await api.get("/_sandbox/faults")).json()["webhook_drop_rate"] == 0


async def test_health_needs_no_credentials(sandbox_url: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        response = await client.get("/_sandbox/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
