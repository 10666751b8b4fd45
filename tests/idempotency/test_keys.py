"""What an Idempotency-Key keeps: business answers, errors included, but never a 5xx (a
dependency away): a retry with the same key after the outage must go through."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.errors import (
    CommunityDirectoryUnavailable,
    GatewayUnavailable,
    InsufficientCredits,
)
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, run_keyed


def _request() -> KeyedRequest:
    return KeyedRequest(
        scope="keys-test", key=uuid.uuid4().hex, method="POST", path="/x", body={"n": 1}
    )


@pytest.mark.parametrize(
    "outage",
    [
        GatewayUnavailable("Cashfree did not answer"),
        CommunityDirectoryUnavailable("MongoDB did not answer", retry_after_s=5),
    ],
)
async def test_a_5xx_is_not_kept_and_the_retry_runs(engine: AsyncEngine, outage: Exception) -> None:
    req, calls = _request(), []

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        calls.append(op_key)
        if len(calls) == 1:
            raise outage
        return Answer(201, {"ok": True})

    with pytest.raises(type(outage)):
        await run_keyed(engine, req, work)
    done = await run_keyed(engine, req, work)
    assert (done.status, done.body, len(calls)) == (201, {"ok": True}, 2)


async def test_a_business_error_is_the_keys_answer(engine: AsyncEngine) -> None:
    req, calls = _request(), []

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        calls.append(op_key)
        raise InsufficientCredits("no credits", available_credits=0, requested_credits=1)

    first = await run_keyed(engine, req, work)
    again = await run_keyed(engine, req, work)
    assert first.status == again.status == 409 and again.replayed and len(calls) == 1


def test_a_keyed_request_of_http_takes_its_method_path_and_json_body() -> None:
    """`KeyedRequest.of` hashes a model as its JSON dump, and a dict as it is, with the
    request's own method and path: the stored hashes of keys kept before it stay valid."""
    from datetime import UTC, datetime

    from pydantic import BaseModel
    from starlette.requests import Request

    class Body(BaseModel):
        at: datetime
        n: int

    http = Request({"type": "http", "method": "PUT", "path": "/v1/x", "headers": []})
    body = Body(at=datetime(2026, 12, 7, tzinfo=UTC), n=1)
    made = KeyedRequest.of(http, "sub-1", "k-1", body)
    by_hand = KeyedRequest(
        scope="sub-1", key="k-1", method="PUT", path="/v1/x", body=body.model_dump(mode="json")
    )
    assert made == by_hand and made.body == {"at": "2026-12-07T00:00:00Z", "n": 1}
    raw = {"note": "kept as given"}
    assert KeyedRequest.of(http, "sub-1", "k-1", raw).body is raw
