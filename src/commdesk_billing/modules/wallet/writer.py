"""The wallet's batch writer: one wallet operation, or many, written in one SQL statement.

An operation's journal, its entries, the statement line, lot and hold changes and the wallet
row go out as data-modifying CTEs of one statement (`db.write.CompositeWrite`): a single round
trip while the wallet's row lock is held, which is what bounds a busy wallet's throughput.
The caller holds every touched wallet's row lock (`repository.lock_wallets`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.driver import Driver, fetch
from commdesk_billing.db.write import CompositeWrite
from commdesk_billing.modules.ledger.journals import ChainHead, add_journals
from commdesk_billing.modules.ledger.model import Journal
from commdesk_billing.modules.wallet.model import (
    Hold,
    HoldStatus,
    Lot,
    StatementLine,
    TxnType,
    Wallet,
)


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
    # (lot, change of credits_reserved): a refund earmarking or freeing a lot's credits
    lot_reservations: Sequence[tuple[uuid.UUID, int]] = ()
    # (lot, change of recognized_paise, change of refunded_paise): the basis this operation
    # recognized (a consumption) or took away with a refund; the journal carries it too.
    lot_basis: Sequence[tuple[uuid.UUID, int, int]] = ()
    new_lot: Lot | None = None
    new_hold: Hold | None = None
    # (hold, new status, captured, released) for a hold this operation closes
    close_hold: tuple[uuid.UUID, HoldStatus, int, int] | None = None
    hold_id: uuid.UUID | None = None
    lot_id: uuid.UUID | None = None
    line_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # Another module's rows that belong to this operation (a community spend's own row),
    # written in the same statement: (data-modifying SQL, its parameters; names unique in
    # the batch). Foreign keys to the journal and the line hold: they are checked at the
    # end of the statement.
    also: Sequence[tuple[str, dict[str, Any]]] = ()


class OperationBatch:
    """Many wallet operations, written in one statement.

    `add` plans an operation against the running state of its wallet (the locked row, then
    each earlier operation of the batch), so statement lines, chain heads and balances follow
    one another exactly as if the operations had been applied one by one. `flush` writes it
    all: journals, legs, lots, holds, statement lines, lot movements and wallet rows, each as
    one multi-row INSERT/UPDATE. One operation is a batch of one.

    Every wallet in the batch must be locked by the caller. Lots and holds created in a batch
    cannot be changed in the same batch (a statement cannot update rows it inserts).
    """

    def __init__(self, wallets: Sequence[Wallet]) -> None:
        self._start = {w.id: w for w in wallets}
        self._state = dict(self._start)
        self._ops: list[WalletOperation] = []
        self._lines: list[StatementLine] = []
        self._new_lots: set[uuid.UUID] = set()
        self._new_holds: set[uuid.UUID] = set()

    def __len__(self) -> int:
        return len(self._ops)

    def wallet(self, wallet_id: uuid.UUID) -> Wallet:
        return self._state[wallet_id]

    def add(self, wallet_id: uuid.UUID, op: WalletOperation) -> tuple[Wallet, StatementLine]:
        wallet = self._state[wallet_id]
        touched = [lot_id for lot_id, _, _ in op.lot_changes]
        touched += [lot_id for lot_id, _ in op.lot_reservations]
        if any(lot_id in self._new_lots for lot_id in touched):
            raise ValueError("a lot created in this batch cannot change in it")
        if op.close_hold is not None and op.close_hold[0] in self._new_holds:
            raise ValueError("a hold created in this batch cannot close in it")
        line = StatementLine(
            id=op.line_id,
            wallet_id=wallet.id,
            seq=wallet.statement_seq + 1,
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
        if op.new_lot is not None:
            self._new_lots.add(op.new_lot.id)
        if op.new_hold is not None:
            self._new_holds.add(op.new_hold.id)
        # The chain head moves when the batch is written; planned here so the next operation
        # on this wallet chains onto it.
        heads, _ = add_journals(
            CompositeWrite(),
            [op.journal],
            {wallet.id: ChainHead(wallet.chain_seq, wallet.chain_head)},
        )
        head = heads[wallet.id]
        after = replace(
            wallet,
            available_credits=line.balance_after,
            locked_credits=wallet.locked_credits + op.locked_delta,
            lifetime_purchased_credits=wallet.lifetime_purchased_credits
            + op.lifetime_purchased_delta,
            chain_seq=head.seq,
            chain_head=head.head,
            statement_seq=line.seq,
            updated_at=op.now,
        )
        if after.available_credits < 0 or after.locked_credits < 0:
            raise ValueError(f"operation would take wallet {wallet.id} below zero")
        self._state[wallet_id] = after
        self._ops.append(op)
        self._lines.append(line)
        return after, line

    async def flush(self, conn: AsyncConnection) -> None:
        if not self._ops:
            return
        write, updated, changed = self._compose()
        result = await write.execute(conn, f"SELECT count(*) FROM {updated}", {})
        self._written(int(result.scalar_one()), changed)

    async def flush_on_driver(
        self, conn: AsyncConnection, driver: Driver, also: Sequence[tuple[str, dict[str, Any]]]
    ) -> int:
        """`flush` on the driver under `conn` (`db.driver`), with `also`'s parts in the same
        statement (another owner's rows of the same requests, e.g. their stored answers);
        returns how many rows the last of them wrote. Without operations, `also` is written
        alone."""
        if self._ops:
            write, updated, changed = self._compose()
        else:
            write, updated, changed = CompositeWrite(), "", []
        last = ""
        for extra_sql, params in also:
            last = write.add(extra_sql, params)
        if not updated and not last:
            return 0
        counted = f"(SELECT count(*) FROM {updated})" if updated else "0"
        also_counted = f"(SELECT count(*) FROM {last})" if last else "0"
        statement, params = write.statement(f"SELECT {counted} AS updated, {also_counted} AS also")
        (row,) = await fetch(conn, driver, statement, params)
        if updated:
            self._written(int(row["updated"]), changed)
        return int(row["also"])

    def _written(self, updated: int, changed: list[Wallet]) -> None:
        if updated != len(changed):
            # Only possible if a wallet changed under us, i.e. a caller skipped its lock.
            raise RuntimeError("wallet rows changed while the batch was planned")
        self._start = dict(self._state)
        self._ops, self._lines = [], []

    def _compose(self) -> tuple[CompositeWrite, str, list[Wallet]]:
        """The batch as one composite write: the write, the name of its wallet-row part
        (whose rows are the wallets updated) and the wallets it should update."""
        ops, lines = self._ops, self._lines
        write = CompositeWrite()
        add_journals(
            write,
            [op.journal for op in ops],
            {w.id: ChainHead(w.chain_seq, w.chain_head) for w in self._start.values()},
        )
        lots = [op.new_lot for op in ops if op.new_lot is not None]
        if lots:
            write.add(
                _NEW_LOTS_SQL,
                {
                    "nl_ids": [lot.id for lot in lots],
                    "nl_wallets": [lot.wallet_id for lot in lots],
                    "nl_sources": [lot.source.value for lot in lots],
                    "nl_credits": [lot.credits_granted for lot in lots],
                    "nl_paid": [lot.paid_paise for lot in lots],
                    "nl_taxable": [lot.taxable_paise for lot in lots],
                    "nl_refs": [lot.source_ref for lot in lots],
                    "nl_journals": [op.journal.id for op in ops if op.new_lot is not None],
                    "nl_ats": [lot.granted_at for lot in lots],
                    "nl_exps": [lot.expires_at for lot in lots],
                },
            )
        holds = [op.new_hold for op in ops if op.new_hold is not None]
        if holds:
            write.add(
                _NEW_HOLDS_SQL,
                {
                    "nh_ids": [h.id for h in holds],
                    "nh_wallets": [h.wallet_id for h in holds],
                    "nh_credits": [h.credits for h in holds],
                    "nh_reasons": [h.reason for h in holds],
                    "nh_keys": [h.idempotency_key for h in holds],
                    "nh_exps": [h.expires_at for h in holds],
                    "nh_ats": [h.created_at for h in holds],
                    "nh_by": [h.created_by for h in holds],
                    "nh_purposes": [h.purpose for h in holds],
                },
            )
        closes = [(op.close_hold, op.now) for op in ops if op.close_hold is not None]
        if closes:
            write.add(
                _CLOSE_HOLDS_SQL,
                {
                    "ch_ids": [c[0][0] for c in closes],
                    "ch_statuses": [c[0][1].value for c in closes],
                    "ch_captured": [c[0][2] for c in closes],
                    "ch_released": [c[0][3] for c in closes],
                    "ch_ats": [c[1] for c in closes],
                },
            )
        # Several operations may draw on one lot: one UPDATE cannot touch a row twice, so
        # the changes are summed per lot first.
        lot_sum: dict[uuid.UUID, list[int]] = {}
        for op in ops:
            for lot_id, remaining, refunded in op.lot_changes:
                acc = lot_sum.setdefault(lot_id, [0, 0, 0, 0, 0])
                acc[0] += remaining
                acc[1] += refunded
            for lot_id, reserved in op.lot_reservations:
                lot_sum.setdefault(lot_id, [0, 0, 0, 0, 0])[2] += reserved
            for lot_id, recognized, refunded_paise in op.lot_basis:
                acc = lot_sum.setdefault(lot_id, [0, 0, 0, 0, 0])
                acc[3] += recognized
                acc[4] += refunded_paise
        if lot_sum:
            write.add(
                _LOT_CHANGES_SQL,
                {
                    "lc_ids": list(lot_sum),
                    "lc_remaining": [v[0] for v in lot_sum.values()],
                    "lc_refunded": [v[1] for v in lot_sum.values()],
                    "lc_reserved": [v[2] for v in lot_sum.values()],
                    "lc_recognized": [v[3] for v in lot_sum.values()],
                    "lc_refunded_paise": [v[4] for v in lot_sum.values()],
                    "lc_at": ops[-1].now,
                },
            )
        write.add(
            _LINES_SQL,
            {
                "t_ids": [t.id for t in lines],
                "t_wallets": [t.wallet_id for t in lines],
                "t_seqs": [t.seq for t in lines],
                "t_types": [t.transaction_type.value for t in lines],
                "t_credits": [t.credits for t in lines],
                "t_befores": [t.balance_before for t in lines],
                "t_afters": [t.balance_after for t in lines],
                "t_sources": [t.source for t in lines],
                "t_source_ids": [t.source_id for t in lines],
                "t_metas": [json.dumps(t.metadata) for t in lines],
                "t_keys": [t.idempotency_key for t in lines],
                "t_journals": [t.journal_id for t in lines],
                "t_holds": [t.hold_id for t in lines],
                "t_lots": [t.lot_id for t in lines],
                "t_ats": [t.created_at for t in lines],
            },
        )
        # A movement is the change of a lot's remaining credits caused by one line, with
        # the basis that change recognized or refunded.
        movements: list[tuple[uuid.UUID, uuid.UUID, int, int, datetime]] = []
        for op in ops:
            basis: dict[uuid.UUID, int] = {}
            for lot_id, recognized, refunded_paise in op.lot_basis:
                basis[lot_id] = basis.get(lot_id, 0) + recognized + refunded_paise
            moved = {lot_id for lot_id, d, _ in op.lot_changes if d}
            if set(basis) - moved:
                raise ValueError("basis can only move with a lot's credits")
            movements += [
                (lot_id, op.line_id, d, basis.get(lot_id, 0), op.now)
                for lot_id, d, _ in op.lot_changes
                if d
            ]
            if op.new_lot is not None:
                movements.append((op.new_lot.id, op.line_id, op.new_lot.credits_granted, 0, op.now))
        if movements:
            write.add(
                _MOVEMENTS_SQL,
                {
                    "mv_lots": [m[0] for m in movements],
                    "mv_lines": [m[1] for m in movements],
                    "mv_credits": [m[2] for m in movements],
                    "mv_basis": [m[3] for m in movements],
                    "mv_ats": [m[4] for m in movements],
                },
            )
        for op in ops:
            for extra_sql, params in op.also:
                write.add(extra_sql, params)
        changed = [self._state[w] for w in self._start if self._state[w] != self._start[w]]
        updated = write.add(
            _WALLETS_SQL,
            {
                "w_ids": [w.id for w in changed],
                "w_prev_seqs": [self._start[w.id].statement_seq for w in changed],
                "w_available": [w.available_credits for w in changed],
                "w_locked": [w.locked_credits for w in changed],
                "w_lifetime": [w.lifetime_purchased_credits for w in changed],
                "w_chain_seqs": [w.chain_seq for w in changed],
                "w_heads": [w.chain_head for w in changed],
                "w_stmt_seqs": [w.statement_seq for w in changed],
                "w_ats": [w.updated_at for w in changed],
            },
        )
        return write, updated, changed


_NEW_LOTS_SQL = """
    INSERT INTO credit_lots (id, wallet_id, source, credits_granted, credits_remaining,
        paid_paise, taxable_paise, source_ref, journal_id, granted_at, expires_at, updated_at)
    SELECT i, w, s, c, c, p, t, r, j, a, e, a
      FROM unnest(CAST(:nl_ids AS uuid[]), CAST(:nl_wallets AS uuid[]),
                  CAST(:nl_sources AS text[]), CAST(:nl_credits AS bigint[]),
                  CAST(:nl_paid AS bigint[]), CAST(:nl_taxable AS bigint[]),
                  CAST(:nl_refs AS text[]), CAST(:nl_journals AS uuid[]),
                  CAST(:nl_ats AS timestamptz[]), CAST(:nl_exps AS timestamptz[]))
           AS v(i, w, s, c, p, t, r, j, a, e)"""

_NEW_HOLDS_SQL = """
    INSERT INTO wallet_holds (id, wallet_id, credits, status, reason, idempotency_key,
                              expires_at, created_at, created_by, purpose)
    SELECT i, w, c, 'active', r, k, e, a, b, p
      FROM unnest(CAST(:nh_ids AS uuid[]), CAST(:nh_wallets AS uuid[]),
                  CAST(:nh_credits AS bigint[]), CAST(:nh_reasons AS text[]),
                  CAST(:nh_keys AS text[]), CAST(:nh_exps AS timestamptz[]),
                  CAST(:nh_ats AS timestamptz[]), CAST(:nh_by AS text[]),
                  CAST(:nh_purposes AS text[]))
           AS v(i, w, c, r, k, e, a, b, p)"""

_CLOSE_HOLDS_SQL = """
    UPDATE wallet_holds h SET status = v.s, captured_credits = v.c, released_credits = v.r,
           closed_at = v.a
      FROM unnest(CAST(:ch_ids AS uuid[]), CAST(:ch_statuses AS text[]),
                  CAST(:ch_captured AS bigint[]), CAST(:ch_released AS bigint[]),
                  CAST(:ch_ats AS timestamptz[])) AS v(i, s, c, r, a)
     WHERE h.id = v.i AND h.status = 'active'"""

_LOT_CHANGES_SQL = """
    UPDATE credit_lots l
       SET credits_remaining = l.credits_remaining + v.d,
           credits_refunded = l.credits_refunded + v.r,
           credits_reserved = l.credits_reserved + v.rs,
           recognized_paise = l.recognized_paise + v.rec,
           refunded_paise = l.refunded_paise + v.rp, updated_at = :lc_at
      FROM unnest(CAST(:lc_ids AS uuid[]), CAST(:lc_remaining AS bigint[]),
                  CAST(:lc_refunded AS bigint[]), CAST(:lc_reserved AS bigint[]),
                  CAST(:lc_recognized AS bigint[]), CAST(:lc_refunded_paise AS bigint[]))
           AS v(id, d, r, rs, rec, rp)
     WHERE l.id = v.id"""

_LINES_SQL = """
    INSERT INTO wallet_transactions (id, wallet_id, seq, transaction_type, credits,
        balance_before, balance_after, source, source_id, metadata, idempotency_key,
        journal_id, hold_id, lot_id, created_at)
    SELECT * FROM unnest(CAST(:t_ids AS uuid[]), CAST(:t_wallets AS uuid[]),
        CAST(:t_seqs AS bigint[]), CAST(:t_types AS text[]), CAST(:t_credits AS bigint[]),
        CAST(:t_befores AS bigint[]), CAST(:t_afters AS bigint[]), CAST(:t_sources AS text[]),
        CAST(:t_source_ids AS text[]), CAST(:t_metas AS jsonb[]), CAST(:t_keys AS text[]),
        CAST(:t_journals AS uuid[]), CAST(:t_holds AS uuid[]), CAST(:t_lots AS uuid[]),
        CAST(:t_ats AS timestamptz[]))"""

_MOVEMENTS_SQL = """
    INSERT INTO credit_lot_movements (lot_id, wallet_transaction_id, credits, basis_paise,
                                      created_at)
    SELECT * FROM unnest(CAST(:mv_lots AS uuid[]), CAST(:mv_lines AS uuid[]),
                         CAST(:mv_credits AS bigint[]), CAST(:mv_basis AS bigint[]),
                         CAST(:mv_ats AS timestamptz[]))"""

# Absolute values computed under the lock; `statement_seq = prev` guards against a caller
# that planned from a stale row.
_WALLETS_SQL = """
    UPDATE wallets w SET available_credits = v.a, locked_credits = v.l,
           lifetime_purchased_credits = v.p, chain_seq = v.cs, chain_head = v.h,
           statement_seq = v.ss, updated_at = v.at
      FROM unnest(CAST(:w_ids AS uuid[]), CAST(:w_prev_seqs AS bigint[]),
                  CAST(:w_available AS bigint[]), CAST(:w_locked AS bigint[]),
                  CAST(:w_lifetime AS bigint[]), CAST(:w_chain_seqs AS bigint[]),
                  CAST(:w_heads AS bytea[]), CAST(:w_stmt_seqs AS bigint[]),
                  CAST(:w_ats AS timestamptz[])) AS v(id, prev, a, l, p, cs, h, ss, at)
     WHERE w.id = v.id AND w.statement_seq = v.prev
    RETURNING w.id"""


async def apply_operation(
    conn: AsyncConnection, wallet: Wallet, op: WalletOperation
) -> tuple[Wallet, StatementLine]:
    """One operation on one locked wallet: a batch of one."""
    batch = OperationBatch([wallet])
    after, line = batch.add(wallet.id, op)
    await batch.flush(conn)
    return after, line
