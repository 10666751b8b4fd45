"""Bodies are bounded before anything parses them: size, content type, and JSON nesting
depth, counted over the bytes as they arrive (no parser, no recursion)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH, JsonDepth, too_deep
from commdesk_billing.security.jwt import Role
from tests.conftest import auth

DEEP = b"[" * 5000 + b"]" * 5000


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet=st.sampled_from('ab[]{}"\\\n\u00e9\u20b9'), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='k[]{}"\\', max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.lists(st.integers(min_value=1, max_value=7), max_size=20))
def test_the_scan_finds_the_parsers_depth_in_any_chunking(value: Any, cuts: list[int]) -> None:
    """Brackets inside strings, escaped quotes and backslashes, and chunks cut anywhere
    (in the middle of an escape too) never change the count."""
    body = json.dumps(value, ensure_ascii=False).encode()
    scan = JsonDepth(limit=10_000)
    at = 0
    for cut in cuts:
        assert scan.feed(body[at : at + cut])
        at += cut
    assert scan.feed(body[at:])
    assert scan.deepest == _depth(value)


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a": "' + b"[" * 100 + b'"}', False),  # brackets in a string
        (b'{"a": "\\"' + b"[" * 100 + b'"}', False),  # after an escaped quote, still a string
        (b'{"a": "\\\\"' + b"[" * 40, True),  # an escaped backslash ends the string
        (b"[" * 40, True),  # unclosed: deep all the same
        (b"{credits: 1", False),  # not JSON: the parser says so later
        (DEEP, True),
    ],
)
def test_depth_limits(body: bytes, deep: bool) -> None:
    assert too_deep(body) is deep


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_api_body_nested_five_thousand_deep_is_a_400_and_moves_nothing(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, chunked: bool
) -> None:
    member = token(Role.member)
    wid = (await client.get("/v1/wallets/me", headers=auth(member))).json()["id"]
    key = uuid.uuid4().hex
    body = b'{"credits": 1, "reason": "x", "metadata": {"k": ' + DEEP + b"}}"

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 1000):
            yield body[at : at + 1000]

    r = await client.post(
        f"/v1/wallets/{wid}/debits",
        content=chunks() if chunked else body,
        headers={**auth(member, key), "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert {k: v for k, v in r.json().items() if k != "request_id"} == {
        "type": "urn:commdesk:billing:problem:json_too_deep",
        "title": "JSON nested too deeply",
        "status": 400,
        "code": "json_too_deep",
        "detail": f"bodies may nest arrays and objects at most {MAX_JSON_DEPTH} deep",
    }
    async with engine.connect() as conn:
        keys = (
            await conn.execute(
                text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}
            )
        ).scalar()
        lines = (
            await conn.execute(
                text("SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w"), {"w": wid}
            )
        ).scalar()
    assert (keys, lines) == (0, 0)


async def test_a_body_within_the_depth_still_reaches_the_route(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    member = token(Role.member)
    wid = (await client.get("/v1/wallets/me", headers=auth(member))).json()["id"]
    # Three levels pass the hygiene; the schema then refuses nested metadata, as before.
    r = await client.post(
        f"/v1/wallets/{wid}/debits",
        json={"credits": 1, "reason": "x", "metadata": {"k": [[1]]}},
        headers=auth(member, uuid.uuid4().hex),
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


async def test_an_unknown_query_parameter_is_refused_naming_what_the_route_takes(
    client: Any, token: Any
) -> None:
    from commdesk_billing.security.jwt import Role
    from tests.conftest import auth

    tok = token(Role.member)
    # `status` is a filter of this route; `sort` is not, and must not be silently ignored.
    r = await client.get("/v1/payments?sort=amount&limit=5", headers=auth(tok))
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "unknown_query_parameter" and body["unknown"] == ["sort"]
    assert "status" in body["allowed"] and "created_from" in body["allowed"]
    assert "limit" in body["allowed"] and "cursor" in body["allowed"]
    ok = await client.get("/v1/payments?limit=5", headers=auth(tok))
    assert ok.status_code == 200, ok.text
