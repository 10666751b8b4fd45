"""SQL for wallets, statement lines, lots and holds: lookups, locks and wallet creation.
The writes of wallet operations are `writer.py`.

Every function that changes a wallet expects the caller to hold that wallet's row lock
(`lock_wallet`), taken once at the start of the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.driver import Driver, fetch
from commdesk_billing.db.sql import sql
from commdesk_billing.modules.wallet.fifo import LotBalance
from commdesk_billing.modules.wallet.model import (
    Hold,
    HoldStatus,
    Lot,
    LotSource,
    StatementLine,
    TxnType,
    Wallet,
)

_WALLET_COLS = """
    id, owner_type, owner_id, available_credits, locked_credits, pending_credits,
    lifetime_purchased_credits, auto_recharge_enabled, auto_recharge_threshold,
    available_account_id, held_account_id, chain_seq, chain_head, statement_seq,
    created_at, updated_at, auto_recharge_trigger
"""
_LINE_COLS = """
    id, wallet_id, seq, transaction_type, credits, balance_before, balance_after, source,
    source_id, metadata, idempotency_key, journal_id, hold_id, lot_id, created_at
"""
_HOLD_COLS = """
    id, wallet_id, credits, captured_credits, released_credits, status, reason,
    idempotency_key, expires_at, created_at, closed_at, created_by, purpose
"""
_LOT_COLS = """
    id, wallet_id, source, credits_granted, credits_remaining, credits_refunded, paid_paise,
    taxable_paise, source_ref, granted_at, expires_at, credits_reserved, recognized_paise,
    refunded_paise
"""


def _wallet(row: Row[Any]) -> Wallet:
    return Wallet(**row._asdict())


def _line(row: Row[Any]) -> StatementLine:
    data = row._asdict()
    meta = data["metadata"]
    data["metadata"] = json.loads(meta) if isinstance(meta, str) else meta
    data["transaction_type"] = TxnType(data["transaction_type"])
    return StatementLine(**data)


def _hold(row: Row[Any]) -> Hold:
    data = row._asdict()
    data["status"] = HoldStatus(data["status"])
    return Hold(**data)


def _lot(row: Row[Any]) -> Lot:
    return _lot_of(row._asdict())


def _lot_of(data: dict[str, Any]) -> Lot:
    return Lot(**{**data, "source": LotSource(data["source"])})


async def find_owned_wallet(
    conn: AsyncConnection, owner_type: str, owner_id: uuid.UUID
) -> Wallet | None:
    row = (
        await conn.execute(
            sql(f"""
        SELECT {_WALLET_COLS} FROM wallets WHERE owner_type = :otype AND owner_id = :oid"""),
            {"otype": owner_type, "oid": owner_id},
        )
    ).first()
    return _wallet(row) if row else None


async def ensure_wallet(conn: AsyncConnection, owner_type: str, owner_id: uuid.UUID) -> None:
    wallet_id = uuid.uuid4()
    await conn.execute(
        sql("""
        WITH w AS (
            INSERT INTO wallets (id, owner_type, owner_id, available_account_id, held_account_id)
            VALUES (:id, :otype, :oid, :avail, :held)
            ON CONFLICT (owner_type, owner_id) DO NOTHING
            RETURNING id, available_account_id, held_account_id
        )
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative,
                                     wallet_id, name)
        SELECT a.id, a.code, 'CREDITS', a.kind, 'credit', false, w.id, a.name
          FROM w, (VALUES
              (:avail, :avail_code, 'wallet_available', 'Wallet available credits'),
              (:held, :held_code, 'wallet_held', 'Wallet held credits')
          ) AS a(id, code, kind, name)"""),
        {
            "id": wallet_id,
            "avail_code": f"wallet:{wallet_id}:available",
            "held_code": f"wallet:{wallet_id}:held",
            "otype": owner_type,
            "oid": owner_id,
            "avail": uuid.uuid4(),
            "held": uuid.uuid4(),
        },
    )


async def get_wallet(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, lock: bool = False
) -> Wallet | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_WALLET_COLS} FROM wallets WHERE id = :id{suffix}"), {"id": wallet_id}
        )
    ).first()
    return _wallet(row) if row else None


async def find_line(conn: AsyncConnection, idempotency_key: str) -> StatementLine | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_LINE_COLS} FROM wallet_transactions WHERE idempotency_key = :k"),
            {"k": idempotency_key},
        )
    ).first()
    return _line(row) if row else None


# Above any seq: the first page of a statement.
_NO_CURSOR = 2**63 - 1

# `seq < :before` on its own, never `(:before IS NULL OR seq < :before)`: a prepared
# statement's generic plan cannot use an OR as an index bound, and a deep page then walks
# the `(wallet_id, seq)` index from the newest line down to the cursor. The first page asks
# for lines below the largest bigint: the same index range.
STATEMENT_PAGE_SQL = f"""
    SELECT {_LINE_COLS} FROM wallet_transactions
     WHERE wallet_id = :w AND seq < :before
     ORDER BY seq DESC LIMIT :limit"""


async def list_lines(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, before_seq: int | None, limit: int
) -> list[StatementLine]:
    rows = (
        await conn.execute(
            sql(STATEMENT_PAGE_SQL),
            {
                "w": wallet_id,
                "before": _NO_CURSOR if before_seq is None else before_seq,
                "limit": limit,
            },
        )
    ).all()
    return [_line(r) for r in rows]


async def lines_by_keys(conn: AsyncConnection, keys: Sequence[str]) -> list[StatementLine]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_LINE_COLS} FROM wallet_transactions
         WHERE idempotency_key = ANY(CAST(:keys AS text[]))
         ORDER BY created_at, seq"""),
            {"keys": list(keys)},
        )
    ).all()
    return [_line(r) for r in rows]


async def lock_wallets(conn: AsyncConnection, wallet_ids: Sequence[uuid.UUID]) -> list[Wallet]:
    """Row-lock several wallets, always in id order, so two batches touching the same
    wallets can never deadlock on each other."""
    rows = (
        await conn.execute(
            sql(f"""SELECT {_WALLET_COLS} FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))
                     ORDER BY id FOR UPDATE"""),
            {"ids": sorted(set(wallet_ids))},
        )
    ).all()
    return [_wallet(r) for r in rows]


# For each wallet, the lots a draw of its need touches in FIFO order, and which of the keys
# already have a statement line.
_FIFO_SQL = """
        SELECT l.wallet_id, l.id, l.drawable, l.before, l.total, l.unrecognized,
               NULL AS done_key
          FROM (
            SELECT wallet_id, id, credits_remaining - credits_reserved AS drawable,
                   credits_remaining AS total,
                   taxable_paise - recognized_paise - refunded_paise AS unrecognized,
                   sum(credits_remaining - credits_reserved) OVER (
                       PARTITION BY wallet_id
                       ORDER BY expires_at ASC NULLS LAST, granted_at, id)
                       - (credits_remaining - credits_reserved) AS before
              FROM credit_lots
             WHERE wallet_id = ANY(CAST(:wallets AS uuid[])) AND credits_remaining > 0
               AND credits_remaining > credits_reserved
          ) l
          JOIN unnest(CAST(:wallets AS uuid[]), CAST(:needs AS bigint[])) AS n(w, need)
            ON n.w = l.wallet_id AND l.before < n.need
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, idempotency_key FROM wallet_transactions
         WHERE idempotency_key = ANY(CAST(:keys AS text[]))
         ORDER BY 1, 4"""


async def fifo_lots(
    conn: AsyncConnection, needs: dict[uuid.UUID, int], keys: Sequence[str]
) -> tuple[dict[uuid.UUID, list[LotBalance]], set[str]]:
    """For each wallet, the lots a draw of `needs[wallet]` credits touches, in FIFO order
    (DESIGN §3) and no more; and which of `keys` already have a statement line (operations
    that ran before). Credits reserved for a refund in flight are not drawable. One
    statement: this is the hottest path.
    """
    rows = (await conn.execute(sql(_FIFO_SQL), _fifo_params(needs, keys))).all()
    return _fifo_result(needs, (r._mapping for r in rows))


def _fifo_params(needs: dict[uuid.UUID, int], keys: Sequence[str]) -> dict[str, Any]:
    return {"wallets": list(needs), "needs": list(needs.values()), "keys": list(keys)}


def _fifo_result(
    needs: dict[uuid.UUID, int], rows: Iterable[Any]
) -> tuple[dict[uuid.UUID, list[LotBalance]], set[str]]:
    lots: dict[uuid.UUID, list[LotBalance]] = {w: [] for w in needs}
    done: set[str] = set()
    for r in rows:
        if r["done_key"] is not None:
            done.add(r["done_key"])
        else:
            lots[r["wallet_id"]].append(
                LotBalance(
                    lot_id=r["id"],
                    remaining=r["drawable"],
                    total=r["total"],
                    unrecognized=r["unrecognized"],
                )
            )
    return lots, done


# The driver's forms of the two reads of a debit (db/driver.py), each with another owner's
# part in the same statement: a hot path saves the round trip.

_WALLET_FIELDS = tuple(c.strip() for c in _WALLET_COLS.split(","))
_LOCK_ONE_SQL = f"SELECT {_WALLET_COLS} FROM wallets WHERE id = :lock_wallet FOR UPDATE"


async def lock_wallet_with(
    conn: AsyncConnection, driver: Driver, wallet_id: uuid.UUID, part: str, params: dict[str, Any]
) -> tuple[Wallet | None, asyncpg.Record]:
    """Row-lock one wallet (None if there is none) in the same statement as `part`, a query
    of exactly one row, which comes back as it is (its columns must not be named like the
    wallet's)."""
    (row,) = await fetch(
        conn,
        driver,
        f"SELECT o.*, {_WALLET_COLS} FROM ({part}) o LEFT JOIN ({_LOCK_ONE_SQL}) w ON true",
        {**params, "lock_wallet": wallet_id},
    )
    if row["id"] is None:
        return None, row
    return Wallet(**{c: row[c] for c in _WALLET_FIELDS}), row


async def fifo_lots_with(
    conn: AsyncConnection,
    driver: Driver,
    needs: dict[uuid.UUID, int],
    keys: Sequence[str],
    part: str,
    params: dict[str, Any],
) -> tuple[dict[uuid.UUID, list[LotBalance]], set[str], list[dict[str, Any]]]:
    """`fifo_lots`, and the rows of `part` (a query of any rows), in one statement. Runs
    after the wallets' locks are held, like `fifo_lots`."""
    rows = await fetch(
        conn,
        driver,
        f"""WITH f AS ({_FIFO_SQL}), o AS ({part})
        SELECT wallet_id, id, drawable, before, total, unrecognized, done_key,
               CAST(NULL AS text) AS other
          FROM f
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, CAST(row_to_json(o) AS text) FROM o""",
        {**params, **_fifo_params(needs, keys)},
    )
    others = [json.loads(r["other"]) for r in rows if r["other"] is not None]
    # A CTE keeps its rows' order in practice, not by any rule: FIFO order is made sure of.
    ours = sorted(
        (r for r in rows if r["other"] is None),
        key=lambda r: (r["done_key"] is not None, r["before"] or 0),
    )
    lots, done = _fifo_result(needs, ours)
    return lots, done, others


async def lots_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID
) -> dict[str, tuple[uuid.UUID, int, int]]:
    """The purchase and bonus lots a payment granted: source -> (lot, drawable, granted)."""
    rows = (
        await conn.execute(
            sql("""
            SELECT source, id, credits_remaining - credits_reserved AS drawable,
                   credits_granted
              FROM credit_lots
             WHERE source_ref = :ref AND source IN ('purchase', 'bonus')"""),
            {"ref": str(payment_id)},
        )
    ).all()
    return {r.source: (r.id, int(r.drawable), int(r.credits_granted)) for r in rows}


async def draws_of_line(conn: AsyncConnection, line_id: uuid.UUID) -> list[tuple[Lot, int, int]]:
    """The lots one statement line drew from, with the credits and basis it took from each."""
    cols = ", ".join(f"l.{c.strip()}" for c in _LOT_COLS.split(","))
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {cols}, -m.credits AS drawn_credits, m.basis_paise AS drawn_basis
              FROM credit_lot_movements m JOIN credit_lots l ON l.id = m.lot_id
             WHERE m.wallet_transaction_id = :line AND m.credits < 0
             ORDER BY m.id"""),
            {"line": line_id},
        )
    ).all()
    out = []
    for r in rows:
        data = r._asdict()
        credits, basis = int(data.pop("drawn_credits")), int(data.pop("drawn_basis"))
        out.append((_lot_of(data), credits, basis))
    return out


async def get_lot(conn: AsyncConnection, lot_id: uuid.UUID) -> Lot | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_LOT_COLS} FROM credit_lots WHERE id = :id"), {"id": lot_id}
        )
    ).first()
    return _lot(row) if row else None


async def get_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Hold | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_HOLD_COLS} FROM wallet_holds WHERE id = :id"), {"id": hold_id}
        )
    ).first()
    return _hold(row) if row else None


async def expired_hold_ids(conn: AsyncConnection, now: datetime, limit: int) -> list[uuid.UUID]:
    rows = (
        await conn.execute(
            sql("""
        SELECT id FROM wallet_holds
         WHERE status = 'active' AND purpose = 'spend' AND expires_at <= :now
         ORDER BY expires_at LIMIT :limit"""),
            {"now": now, "limit": limit},
        )
    ).all()
    return [r.id for r in rows]


async def wallets_with_expired_lots(
    conn: AsyncConnection, at: datetime, *, limit: int
) -> list[uuid.UUID]:
    """Wallets holding lots past their expiry with credits no refund has reserved."""
    rows = await conn.execute(
        sql("""
        SELECT DISTINCT wallet_id FROM credit_lots
         WHERE expires_at <= :at AND credits_remaining > credits_reserved
         LIMIT :n"""),
        {"at": at, "n": limit},
    )
    return [r.wallet_id for r in rows]


async def expired_lots(conn: AsyncConnection, wallet_id: uuid.UUID, at: datetime) -> list[Lot]:
    """A wallet's lots past their expiry with drawable credits, soonest expired first."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_LOT_COLS} FROM credit_lots
         WHERE wallet_id = :w AND expires_at <= :at AND credits_remaining > credits_reserved
         ORDER BY expires_at, granted_at, id"""),
        {"w": wallet_id, "at": at},
    )
    return [_lot(r) for r in rows]


async def set_auto_recharge(
    conn: AsyncConnection,
    wallet_id: uuid.UUID,
    *,
    enabled: bool,
    threshold: int,
    trigger: int | None,
) -> Wallet | None:
    row = (
        await conn.execute(
            sql(f"""
        UPDATE wallets SET auto_recharge_enabled = :enabled, auto_recharge_threshold = :threshold,
               auto_recharge_trigger = :trigger, updated_at = now()
         WHERE id = :id
        RETURNING {_WALLET_COLS}"""),
            {"id": wallet_id, "enabled": enabled, "threshold": threshold, "trigger": trigger},
        )
    ).first()
    return _wallet(row) if row else None


async def set_auto_recharge_triggers(
    conn: AsyncConnection, levels: Sequence[tuple[uuid.UUID, int]]
) -> int:
    """New levels for wallets whose auto-recharge is still on; how many changed."""
    if not levels:
        return 0
    result = await conn.execute(
        # Rows locked in id order first, as every multi-wallet lock is (DESIGN §8).
        sql("""
        WITH v AS (
            SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:levels AS bigint[])) AS v(id, level)
        ), locked AS (
            SELECT w.id FROM wallets w JOIN v ON v.id = w.id
             WHERE w.auto_recharge_enabled AND w.auto_recharge_trigger IS DISTINCT FROM v.level
             ORDER BY w.id FOR UPDATE OF w
        )
        UPDATE wallets w SET auto_recharge_trigger = v.level
          FROM v, locked
         WHERE w.id = v.id AND locked.id = w.id AND w.auto_recharge_enabled"""),
        {"ids": [w for w, _ in levels], "levels": [lv for _, lv in levels]},
    )
    return int(result.rowcount or 0)


async def add_pending_credits(conn: AsyncConnection, wallet_id: uuid.UUID, delta: int) -> None:
    await conn.execute(
        sql("""
        UPDATE wallets SET pending_credits = pending_credits + :delta, updated_at = now()
         WHERE id = :id"""),
        {"id": wallet_id, "delta": delta},
    )


async def debited_since(
    conn: AsyncConnection, wallet_ids: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, int]:
    """Credits each wallet consumed (debits, captures, community spends) since `since`."""
    rows = (
        await conn.execute(
            sql("""
        SELECT wallet_id, coalesce(sum(credits), 0) AS credits
          FROM wallet_transactions
         WHERE wallet_id = ANY(CAST(:ids AS uuid[])) AND created_at >= :since
           AND transaction_type IN ('debit', 'capture', 'community_spend')
         GROUP BY wallet_id"""),
            {"ids": list(wallet_ids), "since": since},
        )
    ).all()
    return {r.wallet_id: int(r.credits) for r in rows}
