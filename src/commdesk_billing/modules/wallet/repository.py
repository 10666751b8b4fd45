"""SQL for wallets, statement lines, lots and holds.

Every function that changes a wallet expects the caller to hold that wallet's row lock
(`lock_wallet`), taken once at the start of the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.db.write import CompositeWrite
from commdesk_billing.modules.ledger.model import Journal
from commdesk_billing.modules.ledger.repository import ChainHead, add_journal
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
    created_at, updated_at
"""
_LINE_COLS = """
    id, wallet_id, seq, transaction_type, credits, balance_before, balance_after, source,
    source_id, metadata, idempotency_key, journal_id, hold_id, lot_id, created_at
"""
_HOLD_COLS = """
    id, wallet_id, credits, captured_credits, released_credits, status, reason,
    idempotency_key, expires_at, created_at, closed_at
"""
_LOT_COLS = """
    id, wallet_id, source, credits_granted, credits_remaining, credits_refunded, paid_paise,
    taxable_paise, source_ref, granted_at, expires_at
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
    data = row._asdict()
    data["source"] = LotSource(data["source"])
    return Lot(**data)


async def find_user_wallet(conn: AsyncConnection, external_id: str) -> Wallet | None:
    row = (
        await conn.execute(
            sql(f"""
        SELECT {", ".join("w." + c.strip() for c in _WALLET_COLS.split(","))}
          FROM users u JOIN wallets w ON w.owner_type = 'user' AND w.owner_id = u.id
         WHERE u.external_id = :sub"""),
            {"sub": external_id},
        )
    ).first()
    return _wallet(row) if row else None


async def ensure_user(
    conn: AsyncConnection, external_id: str, email: str | None, name: str | None
) -> uuid.UUID:
    # ON CONFLICT DO NOTHING waits for a concurrent first-use of the same subject to finish,
    # and the following SELECT (a new snapshot) then sees its row.
    await conn.execute(
        sql("""
        INSERT INTO users (id, external_id, email, name) VALUES (:id, :sub, :email, :name)
        ON CONFLICT (external_id) DO NOTHING"""),
        {"id": uuid.uuid4(), "sub": external_id, "email": email, "name": name},
    )
    user_id = (
        await conn.execute(
            sql("SELECT id FROM users WHERE external_id = :sub"), {"sub": external_id}
        )
    ).scalar_one()
    return uuid.UUID(str(user_id))


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


async def list_lines(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, before_seq: int | None, limit: int
) -> list[StatementLine]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_LINE_COLS} FROM wallet_transactions
         WHERE wallet_id = :w AND (CAST(:before AS bigint) IS NULL OR seq < :before)
         ORDER BY seq DESC LIMIT :limit"""),
            {"w": wallet_id, "before": before_seq, "limit": limit},
        )
    ).all()
    return [_line(r) for r in rows]


async def fifo_lots(
    conn: AsyncConnection, wallet_id: uuid.UUID, credits: int, unless_key: str
) -> list[LotBalance] | None:
    """The lots a draw of `credits` touches, in FIFO order (DESIGN §3), and no more.

    None when a statement line with `unless_key` already exists (the operation ran before):
    the replay check rides along in the same statement, saving a round trip on the hot path.
    """
    rows = (
        await conn.execute(
            sql("""
        SELECT (SELECT 1 FROM wallet_transactions WHERE idempotency_key = :key) AS done,
               l.id, l.credits_remaining
          FROM (SELECT 1) AS one
          LEFT JOIN (
            SELECT id, credits_remaining,
                   sum(credits_remaining) OVER (
                       ORDER BY expires_at ASC NULLS LAST, granted_at, id) - credits_remaining
                       AS before
              FROM credit_lots
             WHERE wallet_id = :w AND credits_remaining > 0
          ) l ON l.before < :credits
         ORDER BY l.before"""),
            {"w": wallet_id, "credits": credits, "key": unless_key},
        )
    ).all()
    if rows and rows[0].done:
        return None
    return [LotBalance(lot_id=r.id, remaining=r.credits_remaining) for r in rows if r.id]


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


async def find_hold_by_key(conn: AsyncConnection, key: str) -> Hold | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_HOLD_COLS} FROM wallet_holds WHERE idempotency_key = :k"), {"k": key}
        )
    ).first()
    return _hold(row) if row else None


async def expired_hold_ids(conn: AsyncConnection, now: datetime, limit: int) -> list[uuid.UUID]:
    rows = (
        await conn.execute(
            sql("""
        SELECT id FROM wallet_holds WHERE status = 'active' AND expires_at <= :now
         ORDER BY expires_at LIMIT :limit"""),
            {"now": now, "limit": limit},
        )
    ).all()
    return [r.id for r in rows]


@dataclass
class WalletOperation:
    """Everything one wallet operation writes, applied in a single statement."""

    journal: Journal
    txn_type: TxnType
    credits: int
    idempotency_key: str
    source: str
    now: datetime
    available_delta: int = 0
    locked_delta: int = 0
    lifetime_purchased_delta: int = 0
    source_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # (lot, change of credits_remaining, change of credits_refunded)
    lot_changes: Sequence[tuple[uuid.UUID, int, int]] = ()
    new_lot: Lot | None = None
    new_hold: Hold | None = None
    # (hold, new status, captured, released) for a hold this operation closes
    close_hold: tuple[uuid.UUID, HoldStatus, int, int] | None = None
    hold_id: uuid.UUID | None = None
    lot_id: uuid.UUID | None = None
    line_id: uuid.UUID = field(default_factory=uuid.uuid4)


async def apply_operation(
    conn: AsyncConnection, wallet: Wallet, op: WalletOperation
) -> tuple[Wallet, StatementLine]:
    write = CompositeWrite()
    heads, _ = add_journal(
        write, op.journal, {wallet.id: ChainHead(wallet.chain_seq, wallet.chain_head)}
    )
    head = heads[wallet.id]
    if op.new_lot is not None:
        lot = op.new_lot
        write.add(
            """
            INSERT INTO credit_lots (id, wallet_id, source, credits_granted, credits_remaining,
                paid_paise, taxable_paise, source_ref, journal_id, granted_at, expires_at,
                updated_at)
            VALUES (:nl_id, :nl_wallet, :nl_source, :nl_credits, :nl_credits, :nl_paid,
                :nl_taxable, :nl_ref, :j_id, :nl_at, :nl_exp, :nl_at)""",
            {
                "nl_id": lot.id,
                "nl_wallet": wallet.id,
                "nl_source": lot.source.value,
                "nl_credits": lot.credits_granted,
                "nl_paid": lot.paid_paise,
                "nl_taxable": lot.taxable_paise,
                "nl_ref": lot.source_ref,
                "nl_at": lot.granted_at,
                "nl_exp": lot.expires_at,
            },
        )
    if op.new_hold is not None:
        hold = op.new_hold
        write.add(
            """
            INSERT INTO wallet_holds (id, wallet_id, credits, status, reason, idempotency_key,
                                      expires_at, created_at)
            VALUES (:nh_id, :nh_wallet, :nh_credits, 'active', :nh_reason, :nh_key, :nh_exp,
                    :nh_at)""",
            {
                "nh_id": hold.id,
                "nh_wallet": wallet.id,
                "nh_credits": hold.credits,
                "nh_reason": hold.reason,
                "nh_key": hold.idempotency_key,
                "nh_exp": hold.expires_at,
                "nh_at": hold.created_at,
            },
        )
    if op.close_hold is not None:
        hold_id, status, captured, released = op.close_hold
        write.add(
            """
            UPDATE wallet_holds SET status = :ch_status, captured_credits = :ch_captured,
                   released_credits = :ch_released, closed_at = :ch_at
             WHERE id = :ch_id AND status = 'active'""",
            {
                "ch_id": hold_id,
                "ch_status": status.value,
                "ch_captured": captured,
                "ch_released": released,
                "ch_at": op.now,
            },
        )
    if op.lot_changes:
        write.add(
            """
            UPDATE credit_lots l
               SET credits_remaining = l.credits_remaining + v.d,
                   credits_refunded = l.credits_refunded + v.r, updated_at = :lc_at
              FROM unnest(CAST(:lc_ids AS uuid[]), CAST(:lc_remaining AS bigint[]),
                          CAST(:lc_refunded AS bigint[])) AS v(id, d, r)
             WHERE l.id = v.id AND l.wallet_id = :lc_wallet""",
            {
                "lc_ids": [c[0] for c in op.lot_changes],
                "lc_remaining": [c[1] for c in op.lot_changes],
                "lc_refunded": [c[2] for c in op.lot_changes],
                "lc_at": op.now,
                "lc_wallet": wallet.id,
            },
        )
    seq = wallet.statement_seq + 1
    line = StatementLine(
        id=op.line_id,
        wallet_id=wallet.id,
        seq=seq,
        transaction_type=op.txn_type,
        credits=op.credits,
        balance_before=wallet.available_credits,
        balance_after=wallet.available_credits + op.available_delta,
        source=op.source,
        source_id=op.source_id,
        metadata=op.metadata,
        idempotency_key=op.idempotency_key,
        journal_id=op.journal.id,
        hold_id=op.hold_id,
        lot_id=op.lot_id,
        created_at=op.now,
    )
    write.add(
        """
        INSERT INTO wallet_transactions (id, wallet_id, seq, transaction_type, credits,
            balance_before, balance_after, source, source_id, metadata, idempotency_key,
            journal_id, hold_id, lot_id, created_at)
        VALUES (:t_id, :t_wallet, :t_seq, :t_type, :t_credits, :t_before, :t_after, :t_source,
            :t_source_id, CAST(:t_meta AS jsonb), :t_key, :j_id, :t_hold, :t_lot, :t_at)""",
        {
            "t_id": line.id,
            "t_wallet": wallet.id,
            "t_seq": seq,
            "t_type": line.transaction_type.value,
            "t_credits": line.credits,
            "t_before": line.balance_before,
            "t_after": line.balance_after,
            "t_source": line.source,
            "t_source_id": line.source_id,
            "t_meta": json.dumps(line.metadata),
            "t_key": line.idempotency_key,
            "t_hold": line.hold_id,
            "t_lot": line.lot_id,
            "t_at": line.created_at,
        },
    )
    # A movement is the change of a lot's remaining credits caused by this line.
    movements = [(lot_id, delta) for lot_id, delta, _ in op.lot_changes if delta]
    if op.new_lot is not None:
        movements.append((op.new_lot.id, op.new_lot.credits_granted))
    if movements:
        write.add(
            """
            INSERT INTO credit_lot_movements (lot_id, wallet_transaction_id, credits, created_at)
            SELECT m.lot, :t_id, m.credits, :t_at
              FROM unnest(CAST(:mv_lots AS uuid[]), CAST(:mv_credits AS bigint[]))
                   AS m(lot, credits)""",
            {"mv_lots": [m[0] for m in movements], "mv_credits": [m[1] for m in movements]},
        )
    result = await write.execute(
        conn,
        f"""
        UPDATE wallets SET available_credits = available_credits + :w_da,
               locked_credits = locked_credits + :w_dl,
               lifetime_purchased_credits = lifetime_purchased_credits + :w_dp,
               chain_seq = :w_seq, chain_head = :w_head, statement_seq = :t_seq,
               updated_at = :t_at
         WHERE id = :t_wallet
        RETURNING {_WALLET_COLS}""",
        {
            "w_da": op.available_delta,
            "w_dl": op.locked_delta,
            "w_dp": op.lifetime_purchased_delta,
            "w_seq": head.seq,
            "w_head": head.head,
        },
    )
    return _wallet(result.one()), line
