"""Hash chain arithmetic, SQL script splitting, cursors, journals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing import pagination
from commdesk_billing.db.migrate import split_sql
from commdesk_billing.errors import InvalidCursor, LedgerInvariantError
from commdesk_billing.modules.ledger.chain import entry_hash, micros
from commdesk_billing.modules.ledger.model import House, Journal, Ledger, Leg
from commdesk_billing.modules.wallet.schemas import decode_cursor, encode_cursor

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def _hash(**changes: object) -> bytes:
    base: dict[str, object] = dict(
        prev=b"\x01" * 32,
        wallet_id=uuid.UUID(int=1),
        seq=5,
        journal_id=uuid.UUID(int=2),
        account_id=uuid.UUID(int=3),
        ledger="CREDITS",
        amount=-100,
        created_at=NOW,
    )
    base.update(changes)
    return entry_hash(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"prev": b"\x02" * 32},
        {"seq": 6},
        {"amount": -101},
        {"ledger": "INR"},
        {"account_id": uuid.UUID(int=4)},
        {"journal_id": uuid.UUID(int=5)},
        {"created_at": NOW.replace(microsecond=123457)},
    ],
)
def test_every_hashed_field_changes_the_hash(change: dict[str, object]) -> None:
    assert _hash(**change) != _hash()


def test_micros_is_exact() -> None:
    assert micros(NOW) % 1_000_000 == 123456


def test_split_sql_respects_dollar_quotes_strings_and_comments() -> None:
    script = """
        CREATE TABLE a (x text DEFAULT ';');  -- it's a comment; with a semicolon
        CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
        SELECT 'it''s';
    """
    parts = split_sql(script)
    assert len(parts) == 3
    assert parts[1].endswith("END $$")


@given(st.integers(min_value=0, max_value=10**17))
def test_cursor_round_trip(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize("bad", ["", "!!!", "c2VxOg", "Zm9vOjEy", "c2VxOi0x", "a" * 65])
def test_cursor_refuses_what_it_did_not_make(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(bad)


def test_unbalanced_journal_is_refused_before_the_database() -> None:
    with pytest.raises(LedgerInvariantError):
        Journal(
            idempotency_key="k",
            kind="t",
            created_at=NOW,
            legs=(
                Leg(House.CONSUMED_PLATFORM, Ledger.CREDITS, 10),
                Leg(House.EXPIRED, Ledger.CREDITS, -9),
            ),
        )
    with pytest.raises(LedgerInvariantError):
        Journal(
            idempotency_key="k",
            kind="t",
            created_at=NOW,
            legs=(
                Leg(House.CONSUMED_PLATFORM, Ledger.CREDITS, 10),
                Leg(House.GST_PAYABLE, Ledger.INR, -10),
            ),
        )
    with pytest.raises(LedgerInvariantError):
        Journal(
            idempotency_key="k",
            kind="t",
            created_at=NOW,
            legs=(
                Leg(House.CONSUMED_PLATFORM, Ledger.CREDITS, 0),
                Leg(House.EXPIRED, Ledger.CREDITS, 0),
            ),
        )


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
