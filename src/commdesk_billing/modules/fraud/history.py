"""Everything the order-stage rules read from PostgreSQL, in one statement.

Opening an order is the hot path: every separate statement costs the API process about half
a millisecond of CPU (SQLAlchemy + asyncpg), and scoring used to make ten of them. This one
reads the list entries, the member's history (billing's facts, communities' spends, users'
age), the mismatches recorded against them and the largest pack on sale — one round trip,
one snapshot. Each figure is the one the owning module's own query would give (same tables,
same filters, same indexes); `tables.SHARED` names each table read here and why.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql

_READ = sql("""
    SELECT lst.kinds, lst.lists, b.failed, b.purchases, b.refunds, b.duplicates, b.bought,
           CASE WHEN b.bought <> 0 THEN (
               SELECT coalesce(max(total), 0) FROM (
                   SELECT sum(credits) AS total FROM community_spends
                    WHERE wallet_id = :w AND created_at >= :window
                    GROUP BY community_id) t)
           ELSE 0 END AS drained,
           (SELECT created_at FROM users WHERE id = :u) AS created_at,
           (SELECT count(*) FROM fraud_events
             WHERE user_id = :u AND kind = ANY(CAST(:mkinds AS text[]))
               AND created_at >= :msince) AS mismatches,
           (SELECT max(price_paise) FROM credit_packs WHERE active) AS top_pack_paise
      FROM (SELECT array_agg(l.kind) AS kinds, array_agg(l.list) AS lists
              FROM fraud_lists l
              JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS e(kind, value)
                ON e.kind = l.kind AND e.value = l.value) lst,
           (SELECT count(*) FILTER (WHERE event_type = 'payment.failed'
                                      AND occurred_at >= :window) AS failed,
                   count(*) FILTER (WHERE event_type = 'payment.credited'
                                      AND occurred_at >= :epoch) AS purchases,
                   count(*) FILTER (WHERE event_type = 'refund.requested'
                                      AND occurred_at >= :epoch) AS refunds,
                   count(*) FILTER (WHERE event_type = 'payment.paid' AND amount_paise = :a
                                      AND occurred_at >= :dup_since) AS duplicates,
                   coalesce(sum(credits) FILTER (WHERE event_type = 'payment.credited'
                                                   AND occurred_at >= :window), 0) AS bought
              FROM billing_events
             WHERE user_id = :u
               AND event_type IN ('payment.failed', 'payment.paid', 'payment.credited',
                                  'refund.requested')) b""")


@dataclass(frozen=True)
class Facts:
    listed: dict[str, str]  # kind -> "allow" / "deny", for the entries asked about
    failed: int  # payment.failed since `window`
    purchases: int  # payment.credited since `epoch`
    refunds: int  # refund.requested since `epoch`
    duplicates: int  # payment.paid of exactly the amount since `dup_since`
    bought: int  # credits of payment.credited since `window`
    drained: int  # the most the wallet spent into one community since `window` (0: none bought)
    created_at: datetime | None  # when billing first saw the user
    mismatches: int  # fraud events of `mismatch_kinds` since `mismatch_since`
    top_pack_paise: int  # the largest active pack's price (0: none on sale)


async def read(
    conn: AsyncConnection,
    *,
    entries: list[tuple[str, str]],
    user_id: uuid.UUID,
    wallet_id: uuid.UUID,
    amount_paise: int,
    window: datetime,
    epoch: datetime,
    dup_since: datetime,
    mismatch_kinds: list[str],
    mismatch_since: datetime,
) -> Facts:
    row = (
        await conn.execute(
            _READ,
            {
                "kinds": [k for k, _ in entries],
                "values": [v for _, v in entries],
                "u": user_id,
                "w": wallet_id,
                "a": amount_paise,
                "window": window,
                "epoch": epoch,
                "dup_since": dup_since,
                "mkinds": mismatch_kinds,
                "msince": mismatch_since,
            },
        )
    ).one()
    return Facts(
        listed=dict(zip(row.kinds or [], row.lists or [], strict=True)),
        failed=int(row.failed),
        purchases=int(row.purchases),
        refunds=int(row.refunds),
        duplicates=int(row.duplicates),
        bought=int(row.bought),
        drained=int(row.drained),
        created_at=row.created_at,
        mismatches=int(row.mismatches),
        top_pack_paise=int(row.top_pack_paise or 0),
    )
