"""Document numbers: sequential and gap-free per series and Indian financial year.

The financial year runs April to March in Indian time (UTC+05:30, no daylight saving), so
the year of a document is decided by its issue time there, not in UTC. A number is taken
from `document_sequences` by an upsert that increments the series' row in the transaction
that inserts the document: concurrent issuers queue on that row, and a transaction that
rolls back takes its increment with it, so no number is skipped or used twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql

IST = timezone(timedelta(hours=5, minutes=30), "IST")
MAX_LENGTH = 16  # GST: a document number is at most 16 characters


def fiscal_year(at: datetime) -> str:
    """'2026-27' for any instant from 1 April 2026 00:00 IST to 31 March 2027 23:59:59 IST."""
    if at.tzinfo is None:
        raise ValueError("an issue time needs a time zone")
    local = at.astimezone(IST)
    start = local.year if local.month >= 4 else local.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def format_number(series: str, year: str, seq: int) -> str:
    """'CDB/2627/000001': series, the two years' last digits, six-digit sequence."""
    number = f"{series}/{year[2:4]}{year[5:7]}/{seq:06d}"
    if len(number) > MAX_LENGTH:
        raise ValueError(f"document number {number} is longer than {MAX_LENGTH} characters")
    return number


async def next_seq(conn: AsyncConnection, series: str, year: str) -> int:
    row = (
        await conn.execute(
            sql("""
            INSERT INTO document_sequences (series, fiscal_year, last_number)
            VALUES (:s, :y, 1)
            ON CONFLICT (series, fiscal_year)
            DO UPDATE SET last_number = document_sequences.last_number + 1
            RETURNING last_number"""),
            {"s": series, "y": year},
        )
    ).one()
    return int(row[0])
