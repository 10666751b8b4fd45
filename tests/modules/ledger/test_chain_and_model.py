"""The ledger's hash chain fields and its refusal of unbalanced journals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from commdesk_billing.errors import LedgerInvariantError
from commdesk_billing.modules.ledger.chain import entry_hash, micros
from commdesk_billing.modules.ledger.model import House, Journal, Ledger, Leg

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
