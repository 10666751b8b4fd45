"""Vendor settlement webhooks that are signed but that no row could hold: an id longer than
the settlement table takes, an empty one, an amount beyond any bigint or beyond Decimal's
range. Each is stored as rejected and answered 200 (Cashfree would otherwise retry bytes that
can never be read), never a 500, and nothing reaches the money tables."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.modules.splits.conftest import Split
from tests.modules.splits.test_split_sponsorships import _post_signed
from tests.modules.sponsorships.conftest import Put


def _body(vendor_id: str, settlement_id: Any, amount: str) -> bytes:
    # The amount as raw JSON text: Cashfree's numbers are read as Decimal, exactly.
    settlement = json.dumps(
        {
            "settlement_id": settlement_id,
            "status": "SUCCESS",
            "utr": "1686217237243457",
            "vendor_id": vendor_id,
            "settlement_amount": "@AMOUNT@",
        }
    ).replace('"@AMOUNT@"', amount)
    return (
        '{"data": {"settlement": ' + settlement + '}, "event_time": '
        '"2026-12-07T10:00:00+05:30", "type": "VENDOR_SETTLEMENT_SUCCESS"}'
    ).encode()


@pytest.mark.parametrize(
    ("settlement_id", "amount"),
    [
        ("9" * 65, "600.00"),
        ("", "600.00"),
        ("77001", "1e30"),
        ("77002", "1e999999"),
        ("77003", "-1e999999"),
    ],
    ids=["id too long", "id empty", "amount past bigint", "amount past Decimal", "negative"],
)
async def test_a_signed_settlement_no_row_can_hold_is_kept_as_rejected(
    split: Split, put: Put, settlement_id: str, amount: str
) -> None:
    _, vendor_id = await split.vendor(put)
    stack = split.base
    r = await _post_signed(stack, _body(vendor_id, settlement_id, amount))
    assert (r.status_code, r.json().get("status")) == (200, "rejected"), r.text
    settled = await stack.scalar(
        "SELECT count(*) FROM vendor_settlements WHERE vendor_id = :v", v=vendor_id
    )
    journals = await stack.scalar(
        "SELECT count(*) FROM ledger_journals WHERE metadata->>'vendor_id' = :v "
        "AND kind LIKE 'split.%'",
        v=vendor_id,
    )
    assert (settled, journals) == (0, 0)


async def test_a_settlement_id_seen_for_one_vendor_moves_nothing_for_another(
    split: Split, put: Put
) -> None:
    """Cashfree's settlement ids are its own and one is one vendor's: a signed event that
    names a settlement we hold for vendor A with vendor B moves neither's due amount (the
    settlement row is A's; clearing B's due on it would credit B with A's money)."""
    _, a = await split.vendor(put)
    _, b = await split.vendor(put)
    stack = split.base
    sid = f"88{abs(hash(a)) % 10**9}"
    first = await _post_signed(stack, _body(a, sid, "10.00").replace(b"SUCCESS", b"CREATED"))
    assert (first.status_code, first.json()["status"]) == (200, "applied"), first.text
    other = await _post_signed(stack, _body(b, sid, "10.00"))
    assert (other.status_code, other.json()["status"]) == (200, "ignored"), other.text
    journals = await stack.scalar(
        "SELECT count(*) FROM ledger_journals WHERE metadata->>'settlement_id' = :s", s=sid
    )
    row = await stack.scalar(
        "SELECT status || ':' || vendor_id FROM vendor_settlements WHERE settlement_id = :s",
        s=sid,
    )
    assert (journals, row) == (0, f"CREATED:{a}")


@pytest.mark.parametrize(
    ("events", "status", "journals"),
    [
        (("FAILED", "SUCCESS"), "SUCCESS", 1),
        (("SUCCESS", "FAILED"), "SUCCESS", 1),
        (("FAILED", "SUCCESS", "REVERSED"), "REVERSED", 2),
        (("FAILED", "REVERSED", "SUCCESS"), "REVERSED", 0),
        (("REVERSED", "FAILED", "SUCCESS"), "REVERSED", 0),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v),
)
async def test_the_books_do_not_depend_on_the_order_events_arrive_in(
    split: Split, put: Put, events: tuple[str, ...], status: str, journals: int
) -> None:
    """Webhooks arrive out of order and again. A SUCCESS means Cashfree paid the vendor
    whatever it said before (a FAILED it retried under the same id, or a FAILED delivered
    late); only a REVERSED takes it back. The same events end in the same books in any
    order: FAILED then SUCCESS is settled exactly as SUCCESS then FAILED is."""
    _, vendor_id = await split.vendor(put)
    stack = split.base
    sid = f"66{uuid.uuid4().int % 10**12}"
    for event in events:
        body = _body(vendor_id, sid, "10.00").replace(b"SUCCESS", event.encode())
        r = await _post_signed(stack, body)
        assert r.status_code == 200 and r.json()["status"] in ("applied", "ignored"), r.text
    row = await stack.scalar(
        "SELECT status FROM vendor_settlements WHERE settlement_id = :s", s=sid
    )
    moved = await stack.scalar(
        "SELECT count(*) FROM ledger_journals WHERE metadata->>'settlement_id' = :s", s=sid
    )
    net = await stack.scalar(
        "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_journals j "
        "ON j.id = e.journal_id WHERE j.metadata->>'settlement_id' = :s "
        "AND e.account_id = (SELECT id FROM ledger_accounts "
        "WHERE code = 'inr:vendor_settlements_due')",
        s=sid,
    )
    assert (row, moved, net) == (status, journals, 1000 if status == "SUCCESS" else 0)
