"""Reading the books for people: the legs of journals, totals per account. Nothing here
writes; the verifier's own reads are in `invariants.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


@dataclass(frozen=True)
class PostedLeg:
    kind: str
    journal_key: str
    account_code: str
    ledger: str
    amount: int


async def legs(
    conn: AsyncConnection, *, journal_key_prefix: str, wallet_id: uuid.UUID
) -> list[PostedLeg]:
    """Every leg of the journals whose key starts with the prefix, and of every journal that
    touched the wallet, in posting order."""
    rows = await conn.execute(
        sql("""
        SELECT j.kind, j.idempotency_key, a.code, e.ledger, e.amount
          FROM ledger_entries e
          JOIN ledger_journals j ON j.id = e.journal_id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE j.idempotency_key LIKE :p
            OR e.journal_id IN (SELECT journal_id FROM ledger_entries WHERE wallet_id = :w)
         ORDER BY e.id"""),
        {"p": journal_key_prefix + "%", "w": wallet_id},
    )
    return [PostedLeg(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]


async def totals_by_account(
    conn: AsyncConnection, *, kinds: tuple[str, ...], metadata_key: str, metadata_value: str
) -> dict[str, int]:
    """Sum per account code of the journals of these kinds whose metadata has the value."""
    rows = await conn.execute(
        sql("""
        SELECT a.code, sum(e.amount) FROM ledger_entries e
          JOIN ledger_journals j ON j.id = e.journal_id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE j.kind = ANY(CAST(:kinds AS text[])) AND j.metadata->>:mk = :mv
         GROUP BY a.code"""),
        {"kinds": list(kinds), "mk": metadata_key, "mv": metadata_value},
    )
    return {str(code): int(amount) for code, amount in rows}


# Journals that move a payee's payable on a settlement's account (`postings.settlement_*`).
SETTLEMENT_KINDS = ("settlement.created", "settlement.failed", "settlement.reversed")


async def payable_for_settlement(
    conn: AsyncConnection, account_id: uuid.UUID, cut_off: datetime
) -> int:
    """What a payee's payable account (credit-normal) offers a settlement at `cut_off`: what
    it was credited up to the cut-off by anything but settlements, less what anything but
    settlements debited from it at any time (a spend or a share taken back after the
    cut-off is already owed back: paying it would only make a receivable), less what
    settlements have taken from it at any time (and given back, on a failure or a
    reversal). A later settlement so never sees entries an earlier one took, whatever its
    cut-off. One statement: the caller holds the payee's lock, so settlements of one payee
    see each other's journals."""
    value = await conn.scalar(
        sql("""
        SELECT coalesce(-sum(e.amount) FILTER (
                   WHERE j.kind <> ALL(CAST(:kinds AS text[]))
                     AND (e.created_at <= :cut OR e.amount > 0)), 0)
             - coalesce(sum(e.amount) FILTER (WHERE j.kind = ANY(CAST(:kinds AS text[]))), 0)
          FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
         WHERE e.account_id = :a"""),
        {"a": account_id, "cut": cut_off, "kinds": list(SETTLEMENT_KINDS)},
    )
    return int(value or 0)


@dataclass(frozen=True)
class JournalLeg:
    journal_id: uuid.UUID
    kind: str
    description: str | None
    created_at: datetime
    account_code: str
    ledger: str
    amount: int


async def journals_of_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> list[JournalLeg]:
    """Every leg of the journals naming the payment in their metadata (its capture, its
    credits, its refunds), in posting order (index `ledger_journals_payment`)."""
    rows = await conn.execute(
        sql("""
        SELECT j.id, j.kind, j.description, j.created_at, a.code, e.ledger, e.amount
          FROM ledger_journals j
          JOIN ledger_entries e ON e.journal_id = j.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE j.metadata->>'payment_id' = :p
         ORDER BY j.created_at, j.id, e.id"""),
        {"p": str(payment_id)},
    )
    return [JournalLeg(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


async def account_balances(
    conn: AsyncConnection, account_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Signed balance (debit positive) of accounts that are not a wallet's, exact to the
    statement's snapshot: the roll-up of the sealed prefix (`ledger_rollups`, kept by the
    sealer) plus the legs after the last seal, an index range of `(account_id, id)` per
    account. Never a sum over all of an account's legs, however many it has."""
    rows = await conn.execute(
        sql("""
        WITH sealed AS (
            SELECT coalesce((SELECT last_entry_id FROM ledger_seals
                              ORDER BY block_no DESC LIMIT 1), 0) AS through
        )
        SELECT a.id,
               coalesce(r.balance, 0)
               + coalesce((SELECT sum(e.amount) FROM ledger_entries e
                            WHERE e.account_id = a.id AND e.id > sealed.through), 0) AS balance
          FROM unnest(CAST(:ids AS uuid[])) AS a(id)
         CROSS JOIN sealed
          LEFT JOIN ledger_rollups r ON r.account_id = a.id"""),
        {"ids": account_ids},
    )
    return {r.id: int(r.balance) for r in rows}
