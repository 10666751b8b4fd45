"""Cursors round-trip and refuse what they did not make."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing import pagination
from commdesk_billing.errors import InvalidCursor
from commdesk_billing.modules.wallet.schemas import decode_cursor, encode_cursor

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10**17))
def test_cursor_round_trip(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize("bad", ["", "!!!", "c2VxOg", "Zm9vOjEy", "c2VxOi0x", "a" * 65])
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
