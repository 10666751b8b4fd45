"""Cursors round-trip and refuse what they did not make."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing import pagination
from commdesk_billing.errors import InvalidCursor
from commdesk_billing.modules.wallet.schemas import decode_cursor, encode_cursor
from commdesk_billing.security.jwt import Role
from tests.conftest import auth

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10**17))
def test_cursor_round_trip(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


# "c2VxOsK5" is "seq:¹", a digit to str.isdigit but not to int().
@pytest.mark.parametrize("bad", ["", "!!!", "c2VxOg", "Zm9vOjEy", "c2VxOi0x", "a" * 65, "c2VxOsK5"])
def test_cursor_refuses_what_it_did_not_make(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(bad)


def test_time_keyset_cursors_round_trip_and_refuse_others() -> None:
    at, row = datetime(2026, 11, 26, 12, 0, 1, 5, tzinfo=UTC), uuid.uuid4()
    assert pagination.decode_cursor("r", pagination.encode_cursor("r", at, row)) == (at, row)
    for kind, bad in (
        ("i", pagination.encode_cursor("r", at, row)),  # another list's cursor
        ("r", "not-base64!"),
        ("r", pagination.encode_cursor("r", at.replace(tzinfo=None), row)),  # no zone
        ("r", "cjpub3RoaW5n"),  # "r:nothing"
    ):
        with pytest.raises(InvalidCursor):
            pagination.decode_cursor(kind, bad)


EDGES = ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59")


def _forged(kind: str, at: str) -> str:
    raw = f"{kind}:{at}|{uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("at", [*EDGES, "1999-12-31T23:59:59+00:00", "2100-01-01T00:00:00+00:00"])
def test_a_cursor_time_outside_the_window_is_invalid(at: str) -> None:
    with pytest.raises(InvalidCursor):
        pagination.decode_cursor("p", _forged("p", at))


def test_a_cursor_time_is_handed_on_in_utc() -> None:
    row = uuid.uuid4()
    raw = f"p:2030-01-01T05:30:00+05:30|{row}".encode()
    at, got = pagination.decode_cursor("p", base64.urlsafe_b64encode(raw).decode())
    assert (at, at.utcoffset(), got) == (datetime(2030, 1, 1, tzinfo=UTC), timedelta(0), row)


@pytest.mark.parametrize("at", EDGES)
@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("p", "/v1/payments"),
        ("i", "/v1/invoices"),
        ("r", "/v1/payments/00000000-0000-4000-8000-000000000000/refunds"),
    ],
)
async def test_every_time_keyed_list_answers_an_absurd_cursor_with_a_422(
    client: httpx.AsyncClient, token: Callable[..., str], kind: str, path: str, at: str
) -> None:
    member = token(Role.member)
    assert (await client.get("/v1/wallets/me", headers=auth(member))).status_code == 200
    r = await client.get(path, params={"cursor": _forged(kind, at)}, headers=auth(member))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "invalid_cursor"
