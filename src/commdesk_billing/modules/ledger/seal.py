"""Seal committed entries into hash-chained blocks (`ledger_seals`).

House-account legs are not chained when written: chaining them would make every posting
wait on the house account (DESIGN §4). Instead a sealer hashes blocks of entries afterwards.

Entry ids come from a sequence, and id order is not commit order: a transaction that drew id
100 may commit after one that drew 101. Sealing "everything up to the highest visible id"
would then miss 100 for ever. So the sealer notes the highest visible id, takes a
transaction id of its own, waits until every older transaction has ended, and only then
seals up to that id: any transaction that starts later draws ids above it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.modules.ledger.chain import seal_hash, seal_line

log = structlog.get_logger(__name__)

_SEAL_LOCK = 0x5EA1ED6E  # one sealer at a time; others skip the round
_ENTRY_COLS = (
    "id, journal_id, account_id, ledger, amount, wallet_id, chain_seq, entry_hash, created_at"
)


@dataclass(frozen=True)
class SealResult:
    blocks: int
    entries: int
    horizon: int | None
    skipped_reason: str | None = None


async def _wait_for_horizon(engine: AsyncEngine, me: str, timeout_s: float) -> bool:
    """Wait until every transaction older than transaction `me` has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with engine.connect() as conn:
            done = (
                await conn.execute(
                    text(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())"
                        " > CAST(CAST(:me AS text) AS xid8)"
                    ),
                    {"me": me},
                )
            ).scalar_one()
            await conn.rollback()
        if done:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)


def digest_rows(rows: Sequence[Row[Any]]) -> bytes:
    h = hashlib.sha256()
    for r in rows:
        h.update(
            seal_line(
                entry_id=r.id,
                journal_id=r.journal_id,
                account_id=r.account_id,
                ledger=r.ledger,
                amount=r.amount,
                wallet_id=r.wallet_id,
                chain_seq=r.chain_seq,
                entry_hash_=bytes(r.entry_hash) if r.entry_hash else None,
                created_at=r.created_at,
            )
        )
    return h.digest()


def rollup_sums(rows: Sequence[Row[Any]]) -> dict[tuple[Any, str], int]:
    """Per (account, ledger) of the accounts that are not a wallet's: the legs' signed sum."""
    sums: dict[tuple[Any, str], int] = {}
    for r in rows:
        if r.wallet_id is None:
            key = (r.account_id, r.ledger)
            sums[key] = sums.get(key, 0) + int(r.amount)
    return sums


async def _roll_up(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> None:
    """Add the block's legs to `ledger_rollups`, in the transaction that writes its seal: the
    roll-up is then always exactly the sealed prefix (migration 0036)."""
    sums = rollup_sums(rows)
    if not sums:
        return
    await conn.execute(
        text("""
        INSERT INTO ledger_rollups (account_id, ledger, balance)
        SELECT * FROM unnest(CAST(:a AS uuid[]), CAST(:l AS text[]), CAST(:b AS bigint[]))
        ON CONFLICT (account_id) DO UPDATE
           SET balance = ledger_rollups.balance + EXCLUDED.balance, updated_at = now()"""),
        {
            "a": [k[0] for k in sums],
            "l": [k[1] for k in sums],
            "b": list(sums.values()),
        },
    )


async def entries_between(conn: AsyncConnection, after: int, last: int) -> Sequence[Row[Any]]:
    """Entries with after < id <= last, in id order: exactly what one block covers."""
    return (
        await conn.execute(
            text(
                f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE id > :a AND id <= :b ORDER BY id"
            ),
            {"a": after, "b": last},
        )
    ).all()


async def seal_pending(
    engine: AsyncEngine, *, block_size: int = 5000, wait_s: float = 10.0
) -> SealResult:
    # Read the horizon, then take a transaction id of our own: every transaction that drew
    # an entry id up to the horizon already had its transaction id then (the wallet row lock
    # or the journal insert gives it one before any entry is inserted), so its id is lower
    # than ours. Waiting until no transaction older than ours is running therefore waits for
    # all of them, including those newer than the snapshot's xmax.
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT max(id) FROM ledger_entries) AS horizon, "
                    "pg_current_xact_id()::text AS me"
                )
            )
        ).one()
    if row.horizon is None:
        return SealResult(0, 0, None, "no entries")
    horizon = int(row.horizon)
    if not await _wait_for_horizon(engine, row.me, wait_s):
        log.warning("ledger.seal.deferred", reason="long_running_transaction", horizon=horizon)
        return SealResult(0, 0, horizon, "a transaction older than the horizon is still open")

    blocks = entries = 0
    while True:
        async with engine.begin() as conn:
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _SEAL_LOCK})
            ).scalar_one():
                return SealResult(blocks, entries, horizon, "another sealer is running")
            last = (
                await conn.execute(
                    text(
                        "SELECT block_no, last_entry_id, seal_hash FROM ledger_seals "
                        "ORDER BY block_no DESC LIMIT 1"
                    )
                )
            ).first()
            after = last.last_entry_id if last else 0
            if after >= horizon:
                return SealResult(blocks, entries, horizon)
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE id > :a AND id <= :h "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"a": after, "h": horizon, "n": block_size},
                )
            ).all()
            if not rows:
                return SealResult(blocks, entries, horizon)
            block_no = (last.block_no if last else 0) + 1
            first_id, last_id = int(rows[0].id), int(rows[-1].id)
            digest = digest_rows(rows)
            prev = bytes(last.seal_hash) if last else None
            await _roll_up(conn, rows)
            await conn.execute(
                text("""
                INSERT INTO ledger_seals (block_no, first_entry_id, last_entry_id, entry_count,
                                          entries_digest, prev_seal_hash, seal_hash)
                VALUES (:b, :f, :l, :c, :d, :p, :s)"""),
                {
                    "b": block_no,
                    "f": first_id,
                    "l": last_id,
                    "c": len(rows),
                    "d": digest,
                    "p": prev,
                    "s": seal_hash(
                        prev=prev,
                        block_no=block_no,
                        first_entry_id=first_id,
                        last_entry_id=last_id,
                        entry_count=len(rows),
                        digest=digest,
                    ),
                },
            )
            blocks += 1
            entries += len(rows)
            log.info(
                "ledger.sealed", block_no=block_no, first=first_id, last=last_id, entries=len(rows)
            )
