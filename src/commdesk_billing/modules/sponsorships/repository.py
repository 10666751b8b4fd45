"""SQL for the sponsorships' tables: sponsorships and their milestones.

Lock order: a sponsorship's row, then its milestones' (after the payment's row, where a
payment is involved: crediting locks the payment first)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.sponsorships.model import (
    IN_ESCROW,
    Milestone,
    Sponsorship,
    SponsorshipStatus,
)

_COLS = (
    "id, payment_id, community_id, sponsor_user_id, path, purpose, amount_paise, fee_bps, "
    "fee_paise, gst_paise, total_paise, status, funded_at, funded_journal_id, created_by, "
    "created_at, updated_at, vendor_id, split_refunded_paise"
)
_MILESTONE_COLS = (
    "sponsorship_id, seq, title, amount_paise, status, delivered_at, delivered_by, "
    "released_at, released_by, release_journal_id, refund_id"
)


async def insert(
    conn: AsyncConnection, s: Sponsorship, milestones: Sequence[tuple[str, int]]
) -> None:
    await conn.execute(
        sql("""
        INSERT INTO sponsorships (id, payment_id, community_id, sponsor_user_id, path, purpose,
                                  amount_paise, fee_bps, fee_paise, gst_paise, total_paise,
                                  status, created_by, vendor_id)
        VALUES (:id, :payment_id, :community_id, :sponsor_user_id, :path, :purpose, :amount,
                :fee_bps, :fee, :gst, :total, :status, :by, :vendor)"""),
        {
            "id": s.id,
            "payment_id": s.payment_id,
            "community_id": s.community_id,
            "sponsor_user_id": s.sponsor_user_id,
            "path": s.path.value,
            "purpose": s.purpose,
            "amount": s.amount_paise,
            "fee_bps": s.fee_bps,
            "fee": s.fee_paise,
            "gst": s.gst_paise,
            "total": s.total_paise,
            "status": s.status.value,
            "by": s.created_by,
            "vendor": s.vendor_id,
        },
    )
    await conn.execute(
        sql("""
        INSERT INTO sponsorship_milestones (sponsorship_id, seq, title, amount_paise, status)
        SELECT :id, t.seq, t.title, t.amount, 'pending'
          FROM unnest(CAST(:titles AS text[]), CAST(:amounts AS bigint[]))
               WITH ORDINALITY AS t(title, amount, seq)"""),
        {
            "id": s.id,
            "titles": [t for t, _ in milestones],
            "amounts": [a for _, a in milestones],
        },
    )


async def get(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, *, lock: bool = False
) -> Sponsorship | None:
    row = (
        await conn.execute(
            sql(
                f"SELECT {_COLS} FROM sponsorships WHERE id = :id" + (" FOR UPDATE" if lock else "")
            ),
            {"id": sponsorship_id},
        )
    ).first()
    return Sponsorship.from_row(row) if row else None


async def by_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, *, lock: bool = False
) -> Sponsorship | None:
    row = (
        await conn.execute(
            sql(
                f"SELECT {_COLS} FROM sponsorships WHERE payment_id = :p"
                + (" FOR UPDATE" if lock else "")
            ),
            {"p": payment_id},
        )
    ).first()
    return Sponsorship.from_row(row) if row else None


async def milestones(conn: AsyncConnection, sponsorship_id: uuid.UUID) -> list[Milestone]:
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_MILESTONE_COLS} FROM sponsorship_milestones
             WHERE sponsorship_id = :id ORDER BY seq"""),
            {"id": sponsorship_id},
        )
    ).all()
    return [Milestone.from_row(r) for r in rows]


async def milestone(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, seq: int, *, lock: bool = False
) -> Milestone | None:
    row = (
        await conn.execute(
            sql(
                f"""
            SELECT {_MILESTONE_COLS} FROM sponsorship_milestones
             WHERE sponsorship_id = :id AND seq = :seq"""
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": sponsorship_id, "seq": seq},
        )
    ).first()
    return Milestone.from_row(row) if row else None


async def mark_funded(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, journal_id: uuid.UUID, at: datetime
) -> bool:
    """awaiting_payment → funded, once."""
    result = await conn.execute(
        sql("""
        UPDATE sponsorships SET status = 'funded', funded_at = :at,
                                funded_journal_id = :j, updated_at = now()
         WHERE id = :id AND status = 'awaiting_payment'"""),
        {"id": sponsorship_id, "j": journal_id, "at": at},
    )
    return result.rowcount == 1


async def mark_delivered(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, seq: int, by: str, at: datetime
) -> bool:
    """pending → delivered, once."""
    result = await conn.execute(
        sql("""
        UPDATE sponsorship_milestones
           SET status = 'delivered', delivered_at = :at, delivered_by = :by
         WHERE sponsorship_id = :id AND seq = :seq AND status = 'pending'"""),
        {"id": sponsorship_id, "seq": seq, "by": by, "at": at},
    )
    return result.rowcount == 1


async def mark_released(
    conn: AsyncConnection,
    sponsorship_id: uuid.UUID,
    seq: int,
    journal_id: uuid.UUID,
    by: str,
    at: datetime,
) -> bool:
    """delivered → released, once; the sponsorship is completed with its last milestone."""
    result = await conn.execute(
        sql("""
        UPDATE sponsorship_milestones
           SET status = 'released', released_at = :at, released_by = :by,
               release_journal_id = :j
         WHERE sponsorship_id = :id AND seq = :seq AND status = 'delivered'"""),
        {"id": sponsorship_id, "seq": seq, "j": journal_id, "by": by, "at": at},
    )
    if result.rowcount != 1:
        return False
    await _complete_if_done(conn, sponsorship_id)
    return True


async def _complete_if_done(conn: AsyncConnection, sponsorship_id: uuid.UUID) -> None:
    """funded → completed once no milestone's money is left in escrow."""
    await conn.execute(
        sql("""
        UPDATE sponsorships SET status = 'completed', updated_at = now()
         WHERE id = :id AND status = 'funded'
           AND NOT EXISTS (SELECT 1 FROM sponsorship_milestones
                            WHERE sponsorship_id = :id
                              AND status IN ('pending', 'delivered', 'refunding'))"""),
        {"id": sponsorship_id},
    )


async def mark_refunding(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, seqs: Sequence[int], refund_id: uuid.UUID
) -> int:
    """pending or delivered → refunding, named by the refund."""
    result = await conn.execute(
        sql("""
        UPDATE sponsorship_milestones SET status = 'refunding', refund_id = :r
         WHERE sponsorship_id = :id AND seq = ANY(:seqs)
           AND status IN ('pending', 'delivered')"""),
        {"id": sponsorship_id, "seqs": list(seqs), "r": refund_id},
    )
    return int(result.rowcount)


async def settle_refund(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, refund_id: uuid.UUID
) -> int:
    """The refund's milestones refunding → refunded (the amount they add up to)."""
    row = (
        await conn.execute(
            sql("""
            WITH done AS (
                UPDATE sponsorship_milestones SET status = 'refunded'
                 WHERE sponsorship_id = :id AND refund_id = :r AND status = 'refunding'
                RETURNING amount_paise)
            SELECT coalesce(sum(amount_paise), 0) FROM done"""),
            {"id": sponsorship_id, "r": refund_id},
        )
    ).one()
    await _complete_if_done(conn, sponsorship_id)
    return int(row[0])


async def undo_refund(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, refund_id: uuid.UUID
) -> int:
    """The refund was not made: its milestones go back where they were (delivered if they
    had been, else pending)."""
    result = await conn.execute(
        sql("""
        UPDATE sponsorship_milestones
           SET status = CASE WHEN delivered_at IS NULL THEN 'pending' ELSE 'delivered' END,
               refund_id = NULL
         WHERE sponsorship_id = :id AND refund_id = :r AND status = 'refunding'"""),
        {"id": sponsorship_id, "r": refund_id},
    )
    return int(result.rowcount)


async def add_split_refunded(conn: AsyncConnection, sponsorship_id: uuid.UUID, part: int) -> None:
    """A split sponsorship's refund succeeded: `part` of the community's share came back."""
    await conn.execute(
        sql("""
        UPDATE sponsorships SET split_refunded_paise = split_refunded_paise + :p,
                                updated_at = now()
         WHERE id = :id AND path = 'split'"""),
        {"id": sponsorship_id, "p": part},
    )


async def list_for(
    conn: AsyncConnection,
    *,
    sponsor_user_id: uuid.UUID | None = None,
    community_id: str | None = None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Sponsorship]:
    """A sponsor's or a community's sponsorships, newest first (keyset)."""
    if (sponsor_user_id is None) == (community_id is None):
        raise ValueError("list a sponsor's or a community's sponsorships")
    column, value = (
        ("sponsor_user_id", sponsor_user_id)
        if sponsor_user_id is not None
        else ("community_id", community_id)
    )
    where = f"{column} = :v"
    params: dict[str, object] = {"v": value, "limit": limit}
    if before is not None:
        where += " AND (created_at, id) < (:t, :i)"
        params.update(t=before[0], i=before[1])
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_COLS} FROM sponsorships WHERE {where}
             ORDER BY created_at DESC, id DESC LIMIT :limit"""),
            params,
        )
    ).all()
    return [Sponsorship.from_row(r) for r in rows]


def held(s: Sponsorship, ms: Sequence[Milestone]) -> int:
    """What the escrow holds for it now."""
    if s.status is SponsorshipStatus.awaiting_payment:
        return 0
    return sum(m.amount_paise for m in ms if m.status in IN_ESCROW)
