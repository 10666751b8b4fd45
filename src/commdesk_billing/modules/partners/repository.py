"""SQL for the partners' tables: partners and their terms, attributions, shares and their
reversals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.errors import AttributionOverlaps
from commdesk_billing.modules.partners.model import (
    Attribution,
    Partner,
    PartnerStatus,
    Reversal,
    Share,
    Totals,
)

_PARTNER_COLS = "id, name, share_bps, status, version, created_by, created_at, updated_at"
_ATTRIBUTION_COLS = (
    "id, user_external_id, partner_id, valid_from, valid_until, created_by, created_at"
)
_SHARE_COLS = (
    "id, payment_id, partner_id, attribution_id, terms_version, taxable_paise, share_bps, "
    "share_paise, journal_id, created_at"
)
_REVERSAL_COLS = (
    "r.id, r.refund_id, r.share_id, r.refund_taxable_paise, r.share_paise, r.journal_id, "
    "r.created_at"
)
_EXCLUSION_VIOLATION = "23P01"


def _partner(row: Row[Any]) -> Partner:
    fields = row._asdict()
    return Partner(**{**fields, "status": PartnerStatus(fields["status"])})


async def _terms(conn: AsyncConnection, p: Partner, reason: str, created_by: str) -> None:
    await conn.execute(
        sql("""
        INSERT INTO partner_terms (partner_id, version, share_bps, status, reason, created_by)
        VALUES (:p, :v, :bps, :status, :reason, :by)"""),
        {
            "p": p.id,
            "v": p.version,
            "bps": p.share_bps,
            "status": p.status.value,
            "reason": reason,
            "by": created_by,
        },
    )


async def insert_partner(
    conn: AsyncConnection, partner_id: str, name: str, share_bps: int, reason: str, by: str
) -> Partner | None:
    """Its first terms too. None when the id is taken (ids are chosen once)."""
    row = (
        await conn.execute(
            sql(f"""
            INSERT INTO partners (id, name, share_bps, status, version, created_by)
            VALUES (:id, :name, :bps, 'active', 1, :by)
            ON CONFLICT (id) DO NOTHING
            RETURNING {_PARTNER_COLS}"""),
            {"id": partner_id, "name": name, "bps": share_bps, "by": by},
        )
    ).first()
    if row is None:
        return None
    partner = _partner(row)
    await _terms(conn, partner, reason, by)
    return partner


async def get_partner(conn: AsyncConnection, partner_id: str) -> Partner | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_PARTNER_COLS} FROM partners WHERE id = :id"), {"id": partner_id}
        )
    ).first()
    return _partner(row) if row else None


async def change_terms(
    conn: AsyncConnection,
    partner_id: str,
    *,
    name: str,
    share_bps: int,
    status: PartnerStatus,
    reason: str,
    by: str,
) -> Partner | None:
    """The next version of the partner's terms, and its history row. The row's own update
    serializes two changes at once, so versions never collide or skip."""
    row = (
        await conn.execute(
            sql(f"""
            UPDATE partners SET name = :name, share_bps = :bps, status = :status,
                                version = version + 1, updated_at = now()
             WHERE id = :id
            RETURNING {_PARTNER_COLS}"""),
            {"id": partner_id, "name": name, "bps": share_bps, "status": status.value},
        )
    ).first()
    if row is None:
        return None
    partner = _partner(row)
    await _terms(conn, partner, reason, by)
    return partner


async def insert_attribution(
    conn: AsyncConnection,
    *,
    user_external_id: str,
    partner_id: str,
    valid_from: datetime,
    valid_until: datetime | None,
    by: str,
) -> Attribution:
    """Refused (AttributionOverlaps) when the user has another attribution in force at any
    instant of the window: the exclusion constraint decides, also between concurrent
    inserts. In a savepoint, so the caller's transaction survives the refusal."""
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    sql(f"""
                    INSERT INTO partner_attributions (id, user_external_id, partner_id,
                                                      valid_from, valid_until, created_by)
                    VALUES (:id, :u, :p, :f, :t, :by)
                    RETURNING {_ATTRIBUTION_COLS}"""),
                    {
                        "id": uuid.uuid4(),
                        "u": user_external_id,
                        "p": partner_id,
                        "f": valid_from,
                        "t": valid_until,
                        "by": by,
                    },
                )
            ).one()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == _EXCLUSION_VIOLATION:
            raise AttributionOverlaps(
                "the user is attributed to a partner for part of this window already"
            ) from exc
        raise
    return Attribution(**row._asdict())


async def attribution_at(
    conn: AsyncConnection, user_external_id: str, at: datetime
) -> Attribution | None:
    """The attribution in force at `at` (the exclusion constraint allows at most one)."""
    row = (
        await conn.execute(
            sql(f"""
            SELECT {_ATTRIBUTION_COLS} FROM partner_attributions
             WHERE user_external_id = :u
               AND tstzrange(valid_from, valid_until, '[)') @> CAST(:at AS timestamptz)"""),
            {"u": user_external_id, "at": at},
        )
    ).first()
    return Attribution(**row._asdict()) if row else None


async def attribution_of_user_at(
    conn: AsyncConnection, user_id: uuid.UUID, at: datetime
) -> Attribution | None:
    """`attribution_at` for the user with this id (our users' id, not their external id):
    the user's external id joined in, one statement instead of two."""
    cols = ", ".join(f"a.{c}" for c in _ATTRIBUTION_COLS.split(", "))
    row = (
        await conn.execute(
            sql(f"""
            SELECT {cols} FROM users u JOIN partner_attributions a
                ON a.user_external_id = u.external_id
             WHERE u.id = :u
               AND tstzrange(a.valid_from, a.valid_until, '[)') @> CAST(:at AS timestamptz)"""),
            {"u": user_id, "at": at},
        )
    ).first()
    return Attribution(**row._asdict()) if row else None


async def insert_share(conn: AsyncConnection, share: Share) -> bool:
    """False when the payment already has its share (UNIQUE payment_id)."""
    result = await conn.execute(
        sql(f"""
        INSERT INTO partner_shares ({_SHARE_COLS})
        VALUES (:id, :payment_id, :partner_id, :attribution_id, :terms_version,
                :taxable_paise, :share_bps, :share_paise, :journal_id, :created_at)
        ON CONFLICT (payment_id) DO NOTHING"""),
        {f: getattr(share, f) for f in _SHARE_COLS.split(", ")},
    )
    return bool(result.rowcount)


async def share_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, *, lock: bool = False
) -> Share | None:
    """`lock`: one reversal of this share at a time (refunds of one payment also queue on
    the payment's row; this keeps the rule the partners module's own)."""
    row = (
        await conn.execute(
            sql(
                f"SELECT {_SHARE_COLS} FROM partner_shares WHERE payment_id = :p"
                + (" FOR UPDATE" if lock else "")
            ),
            {"p": payment_id},
        )
    ).first()
    return Share(**row._asdict()) if row else None


async def reversed_so_far(conn: AsyncConnection, share_id: uuid.UUID) -> tuple[int, int]:
    """(refunded taxable value, share taken back) of the share's reversals."""
    row = (
        await conn.execute(
            sql("""
            SELECT coalesce(sum(refund_taxable_paise), 0) AS taxable,
                   coalesce(sum(share_paise), 0) AS share
              FROM partner_share_reversals WHERE share_id = :s"""),
            {"s": share_id},
        )
    ).one()
    return int(row.taxable), int(row.share)


async def insert_reversal(conn: AsyncConnection, reversal: Reversal) -> bool:
    """False when the refund was already taken into account (UNIQUE refund_id)."""
    result = await conn.execute(
        sql("""
        INSERT INTO partner_share_reversals (id, refund_id, share_id, refund_taxable_paise,
                                             share_paise, journal_id, created_at)
        VALUES (:id, :refund_id, :share_id, :refund_taxable_paise, :share_paise,
                :journal_id, :created_at)
        ON CONFLICT (refund_id) DO NOTHING"""),
        {
            "id": reversal.id,
            "refund_id": reversal.refund_id,
            "share_id": reversal.share_id,
            "refund_taxable_paise": reversal.refund_taxable_paise,
            "share_paise": reversal.share_paise,
            "journal_id": reversal.journal_id,
            "created_at": reversal.created_at,
        },
    )
    return bool(result.rowcount)


async def reversal_of_refund(conn: AsyncConnection, refund_id: uuid.UUID) -> Reversal | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_REVERSAL_COLS} FROM partner_share_reversals r WHERE r.refund_id = :r"),
            {"r": refund_id},
        )
    ).first()
    return Reversal(**row._asdict()) if row else None


async def recent_shares(conn: AsyncConnection, partner_id: str, limit: int) -> list[Share]:
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_SHARE_COLS} FROM partner_shares WHERE partner_id = :p
             ORDER BY created_at DESC, id DESC LIMIT :n"""),
            {"p": partner_id, "n": limit},
        )
    ).all()
    return [Share(**r._asdict()) for r in rows]


async def recent_reversals(conn: AsyncConnection, partner_id: str, limit: int) -> list[Reversal]:
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_REVERSAL_COLS} FROM partner_share_reversals r
              JOIN partner_shares s ON s.id = r.share_id
             WHERE s.partner_id = :p
             ORDER BY r.created_at DESC, r.id DESC LIMIT :n"""),
            {"p": partner_id, "n": limit},
        )
    ).all()
    return [Reversal(**r._asdict()) for r in rows]


async def totals(conn: AsyncConnection, partner_id: str) -> Totals:
    """From the shares and reversals themselves, one statement (`ledger verify` checks the
    partner's payable account against the same sums)."""
    row = (
        await conn.execute(
            sql("""
            SELECT (SELECT count(*) FROM partner_shares WHERE partner_id = :p) AS shares,
                   (SELECT coalesce(sum(share_paise), 0) FROM partner_shares
                     WHERE partner_id = :p) AS earned,
                   count(r.id) AS reversals, coalesce(sum(r.share_paise), 0) AS reversed
              FROM partner_share_reversals r
              JOIN partner_shares s ON s.id = r.share_id
             WHERE s.partner_id = :p"""),
            {"p": partner_id},
        )
    ).one()
    return Totals(
        shares=int(row.shares),
        reversals=int(row.reversals),
        earned_paise=int(row.earned),
        reversed_paise=int(row.reversed),
    )
