"""SQL of the invoices domain."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.invoices.document import DocumentKind
from commdesk_billing.modules.invoices.model import Invoice

_COLUMNS = ", ".join(Invoice.__dataclass_fields__)


async def get(
    conn: AsyncConnection, invoice_id: uuid.UUID, *, lock: bool = False
) -> Invoice | None:
    # NO KEY UPDATE: a credit note referencing this invoice is not held up while its PDF
    # is drawn and stored.
    suffix = " FOR NO KEY UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM invoices WHERE id = :id{suffix}"), {"id": invoice_id}
        )
    ).first()
    return Invoice.from_row(row) if row else None


async def tax_invoice_of(conn: AsyncConnection, payment_id: uuid.UUID) -> Invoice | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_COLUMNS} FROM invoices
                     WHERE payment_id = :p AND kind = 'tax_invoice'"""),
            {"p": payment_id},
        )
    ).first()
    return Invoice.from_row(row) if row else None


async def credit_note_of(conn: AsyncConnection, refund_id: uuid.UUID) -> Invoice | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM invoices WHERE refund_id = :r"), {"r": refund_id}
        )
    ).first()
    return Invoice.from_row(row) if row else None


async def insert_issued(conn: AsyncConnection, values: dict[str, Any], event_type: str) -> datetime:
    """Insert an issued document and its billing event in one statement (one round trip
    while the series' counter row is held). Returns the row's created_at."""
    values = {**values, "document": json.dumps(values["document"])}
    cols = ", ".join(values)
    params = ", ".join("CAST(:document AS jsonb)" if c == "document" else f":{c}" for c in values)
    row = (
        await conn.execute(
            sql(f"""
            WITH i AS (INSERT INTO invoices ({cols}) VALUES ({params})
                       RETURNING id, payment_id, refund_id, user_id, total_paise, number,
                                 created_at),
                 e AS (INSERT INTO billing_events (event_type, payment_id, refund_id,
                                                   invoice_id, user_id, amount_paise, data)
                       SELECT :event_type, payment_id, refund_id, id, user_id, total_paise,
                              jsonb_build_object('number', number)
                         FROM i)
            SELECT created_at FROM i"""),
            {**values, "event_type": event_type},
        )
    ).one()
    created: datetime = row.created_at
    return created


async def set_pdf(
    conn: AsyncConnection, invoice_id: uuid.UUID, key: str, sha256: str, size: int
) -> None:
    await conn.execute(
        sql("""
        UPDATE invoices SET pdf_key = :k, pdf_sha256 = :h, pdf_bytes = :n, pdf_stored_at = now()
         WHERE id = :id AND pdf_key IS NULL"""),
        {"id": invoice_id, "k": key, "h": sha256, "n": size},
    )


async def listing(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID | None,
    payment_id: uuid.UUID | None,
    kind: DocumentKind | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Invoice]:
    at, bid = before or (None, None)
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_COLUMNS} FROM invoices
             WHERE (CAST(:u AS uuid) IS NULL OR user_id = :u)
               AND (CAST(:p AS uuid) IS NULL OR payment_id = :p)
               AND (CAST(:k AS text) IS NULL OR kind = :k)
               AND (CAST(:at AS timestamptz) IS NULL
                    OR (issued_at, id) < (CAST(:at AS timestamptz), CAST(:bid AS uuid)))
             ORDER BY issued_at DESC, id DESC LIMIT :limit"""),
            {
                "u": user_id,
                "p": payment_id,
                "k": kind.value if kind else None,
                "at": at,
                "bid": bid,
                "limit": limit,
            },
        )
    ).all()
    return [Invoice.from_row(r) for r in rows]


async def pending_pdfs(
    conn: AsyncConnection, *, older_than: datetime, limit: int
) -> list[uuid.UUID]:
    rows = (
        await conn.execute(
            sql("""
            SELECT id FROM invoices WHERE pdf_key IS NULL AND created_at < :t
             ORDER BY created_at LIMIT :limit"""),
            {"t": older_than, "limit": limit},
        )
    ).all()
    return [r.id for r in rows]


async def undocumented(
    conn: AsyncConnection, *, older_than: datetime, limit: int
) -> list[tuple[str, str, uuid.UUID]]:
    """Credited payments without their tax invoice and successful refunds without their
    credit note, as the message that issues each: (message type, payload key, id)."""
    rows = (
        await conn.execute(
            sql("""
            (SELECT 'payment.credited' AS t, 'payment_id' AS k, p.id
               FROM payments p
              WHERE p.status = 'CREDITED' AND p.credited_at < :t
                AND NOT EXISTS (SELECT 1 FROM invoices i
                                 WHERE i.payment_id = p.id AND i.kind = 'tax_invoice')
              ORDER BY p.credited_at LIMIT :limit)
            UNION ALL
            (SELECT 'refund.succeeded', 'refund_id', f.id
               FROM refunds f
              WHERE f.status = 'SUCCESS' AND f.processed_at < :t
                -- A refund of none of our supply has no credit note to issue.
                AND f.amount_paise > f.passthrough_paise
                AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.refund_id = f.id)
              ORDER BY f.processed_at LIMIT :limit)"""),
            {"t": older_than, "limit": limit},
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


async def credit_notes_of(conn: AsyncConnection, refund_ids: list[uuid.UUID]) -> list[Invoice]:
    """The credit notes of these refunds (by the unique `refund_id`), oldest first."""
    if not refund_ids:
        return []
    rows = await conn.execute(
        sql(f"""SELECT {_COLUMNS} FROM invoices WHERE refund_id = ANY(:ids)
                 ORDER BY issued_at, id"""),
        {"ids": refund_ids},
    )
    return [Invoice.from_row(r) for r in rows]
