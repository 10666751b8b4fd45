"""Document numbers: gap-free and unique under concurrency, new sequence per financial year."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.invoices.numbering import (
    IST,
    fiscal_year,
    format_number,
    next_seq,
)


class _Abandoned(Exception):
    pass


async def test_fifty_concurrent_issuers_leave_no_gap_and_no_duplicate(engine: AsyncEngine) -> None:
    series = "T" + uuid.uuid4().hex[:3].upper()
    year = "2026-27"
    await _table(engine)
    rng = random.Random(5)
    doomed = set(rng.sample(range(50), 10))

    async def issuer(i: int) -> int | None:
        async def work(conn: AsyncConnection) -> int:
            seq = await next_seq(conn, series, year)
            await asyncio.sleep(rng.random() / 50)  # hold the number a while, as issuing does
            await conn.execute(
                text("INSERT INTO numbering_probe (series, seq, number) VALUES (:s, :q, :n)"),
                {"s": series, "q": seq, "n": format_number(series, year, seq)},
            )
            if i in doomed:
                raise _Abandoned  # a document that fails after taking its number
            return seq

        try:
            return await in_transaction(engine, work)
        except _Abandoned:
            return None

    try:
        results = await asyncio.gather(*(issuer(i) for i in range(50)))
        await _check(engine, series, results)
    finally:
        await _forget(engine, series)


async def _check(engine: AsyncEngine, series: str, results: list[int | None]) -> None:
    kept = sorted(r for r in results if r is not None)
    assert kept == list(range(1, 41))  # 40 committed documents: 1..40, nothing skipped
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT seq, number FROM numbering_probe WHERE series = :s ORDER BY seq"),
                {"s": series},
            )
        ).all()
        last = (
            await conn.execute(
                text("SELECT last_number FROM document_sequences WHERE series = :s"),
                {"s": series},
            )
        ).scalar_one()
    assert [r.seq for r in rows] == list(range(1, 41))
    assert len({r.number for r in rows}) == 40
    assert last == 40


async def test_a_financial_year_boundary_starts_a_new_sequence(engine: AsyncEngine) -> None:
    series = "F" + uuid.uuid4().hex[:3].upper()
    end = datetime(2027, 3, 31, 23, 59, 59, tzinfo=IST)
    start = datetime(2027, 4, 1, 0, 0, 0, tzinfo=IST)
    assert fiscal_year(end) == "2026-27"
    assert fiscal_year(start) == "2027-28"
    # 31 March 18:30 UTC is already 1 April in India.
    assert fiscal_year(datetime(2027, 3, 31, 18, 30, tzinfo=UTC)) == "2027-28"
    assert fiscal_year(datetime(2027, 3, 31, 18, 29, 59, tzinfo=UTC)) == "2026-27"

    async def take(at: datetime) -> str:
        async def work(conn: AsyncConnection) -> str:
            year = fiscal_year(at)
            return format_number(series, year, await next_seq(conn, series, year))

        return await in_transaction(engine, work)

    try:
        numbers = [await take(end), await take(end), await take(start), await take(end)]
    finally:
        await _forget(engine, series)
    assert numbers == [
        f"{series}/2627/000001",
        f"{series}/2627/000002",
        f"{series}/2728/000001",
        f"{series}/2627/000003",
    ]


def test_numbers_fit_gst_rules() -> None:
    assert format_number("CDB", "2026-27", 1) == "CDB/2627/000001"
    # The longest the configuration allows (3 letters) still fits in 16 at 7 digits.
    assert format_number("ABC", "2026-27", 9_999_999) == "ABC/2627/9999999"
    with pytest.raises(ValueError):
        format_number("ABC", "2026-27", 10_000_000)
    with pytest.raises(ValueError):
        fiscal_year(datetime(2027, 1, 1))  # noqa: DTZ001 - a naive time is the error


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("""
            CREATE TABLE IF NOT EXISTS numbering_probe (
                series text NOT NULL, seq bigint NOT NULL, number text NOT NULL UNIQUE,
                PRIMARY KEY (series, seq))""")
        )


async def _forget(engine: AsyncEngine, series: str) -> None:
    # These series number no real documents: `ledger verify` would rightly call them gaps.
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM document_sequences WHERE series = :s"), {"s": series})
        await conn.execute(text("DELETE FROM numbering_probe WHERE series = :s"), {"s": series})
