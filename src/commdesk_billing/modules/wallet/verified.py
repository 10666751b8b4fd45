"""What `ledger verify` keeps of the wallet's lots between runs (`wallet_verify_lots`), so an
incremental run never re-reads a lot's old movements. Written only by a clean run, in its
snapshot; the checks that read it are in `invariants.py` (checks only read)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def record_lots(
    conn: AsyncConnection,
    moved: Sequence[tuple[uuid.UUID, int, int]],
    *,
    replace_all: bool,
) -> None:
    """Add each lot's verified new movements (lot, credits, basis) to its record; a full run
    (`replace_all`) writes every lot's record afresh."""
    if replace_all:
        await conn.execute(text("DELETE FROM wallet_verify_lots"))
    if moved:
        await _add(conn, moved)
    if replace_all:
        # Rewritten whole: the next run's plans should know its size now (a role that does
        # not own it is only warned).
        await conn.execute(text("ANALYZE wallet_verify_lots"))


async def _add(conn: AsyncConnection, moved: Sequence[tuple[uuid.UUID, int, int]]) -> None:
    await conn.execute(
        text("""
        INSERT INTO wallet_verify_lots (lot_id, credits_moved, basis_moved)
        SELECT * FROM unnest(CAST(:l AS uuid[]), CAST(:c AS bigint[]), CAST(:b AS bigint[]))
        ON CONFLICT (lot_id) DO UPDATE
           SET credits_moved = wallet_verify_lots.credits_moved + EXCLUDED.credits_moved,
               basis_moved = wallet_verify_lots.basis_moved + EXCLUDED.basis_moved"""),
        {"l": [m[0] for m in moved], "c": [m[1] for m in moved], "b": [m[2] for m in moved]},
    )
