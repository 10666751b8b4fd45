"""SQL for journals and entries."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.write import CompositeWrite
from commdesk_billing.modules.ledger.chain import entry_hash
from commdesk_billing.modules.ledger.model import Journal


@dataclass(frozen=True)
class ChainHead:
    """Position of a wallet's hash chain; read and advanced under the wallet's row lock."""

    seq: int
    head: bytes | None


_JOURNAL_SQL = """
    INSERT INTO ledger_journals (id, idempotency_key, kind, description, metadata, created_at)
    VALUES (:j_id, :j_key, :j_kind, :j_desc, CAST(:j_meta AS jsonb), :j_at)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
"""

# `FROM p{n}` makes the entries depend on the journal row having been inserted: a journal
# key seen before inserts nothing at all.
_ENTRIES_SQL = """
    INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, wallet_id, chain_seq,
                                prev_hash, entry_hash, created_at)
    SELECT j.id, t.a, t.l, t.m, t.w, t.s, t.p, t.h, CAST(:j_at AS timestamptz)
      FROM {journal_part} AS j,
           unnest(CAST(:e_accounts AS uuid[]), CAST(:e_ledgers AS text[]),
                  CAST(:e_amounts AS bigint[]), CAST(:e_wallets AS uuid[]),
                  CAST(:e_seqs AS bigint[]), CAST(:e_prevs AS bytea[]),
                  CAST(:e_hashes AS bytea[]))
           WITH ORDINALITY AS t(a, l, m, w, s, p, h, n)
     ORDER BY t.n
    RETURNING id
"""


def add_journal(
    write: CompositeWrite, journal: Journal, heads: dict[uuid.UUID, ChainHead]
) -> tuple[dict[uuid.UUID, ChainHead], str]:
    """Add the journal and its legs to `write`; return the advanced chain heads and the name
    of the part whose rows are the inserted entries (empty when the key was seen before).

    Every leg on a wallet account must have its wallet's current head in `heads` (the caller
    holds that wallet's row lock).
    """
    new_heads = dict(heads)
    seqs: list[int | None] = []
    prevs: list[bytes | None] = []
    hashes: list[bytes | None] = []
    for leg in journal.legs:
        if leg.wallet_id is None:
            seqs.append(None)
            prevs.append(None)
            hashes.append(None)
            continue
        current = new_heads[leg.wallet_id]
        seq = current.seq + 1
        digest = entry_hash(
            prev=current.head,
            wallet_id=leg.wallet_id,
            seq=seq,
            journal_id=journal.id,
            account_id=leg.account_id,
            ledger=leg.ledger.value,
            amount=leg.amount,
            created_at=journal.created_at,
        )
        seqs.append(seq)
        prevs.append(current.head)
        hashes.append(digest)
        new_heads[leg.wallet_id] = ChainHead(seq=seq, head=digest)
    journal_part = write.add(
        _JOURNAL_SQL,
        {
            "j_id": journal.id,
            "j_key": journal.idempotency_key,
            "j_kind": journal.kind,
            "j_desc": journal.description,
            "j_meta": json.dumps(journal.metadata),
            "j_at": journal.created_at,
        },
    )
    entries_part = write.add(
        _ENTRIES_SQL.format(journal_part=journal_part),
        {
            "e_accounts": [leg.account_id for leg in journal.legs],
            "e_ledgers": [leg.ledger.value for leg in journal.legs],
            "e_amounts": [leg.amount for leg in journal.legs],
            "e_wallets": [leg.wallet_id for leg in journal.legs],
            "e_seqs": seqs,
            "e_prevs": prevs,
            "e_hashes": hashes,
        },
    )
    return new_heads, entries_part


async def post_journal(conn: AsyncConnection, journal: Journal) -> bool:
    """Post a journal of house-account legs only. False when its key was posted before."""
    if any(leg.wallet_id is not None for leg in journal.legs):
        raise ValueError("wallet legs are posted by the wallet service, under the wallet lock")
    write = CompositeWrite()
    _, entries = add_journal(write, journal, {})
    result = await write.execute(conn, f"SELECT count(*) FROM {entries}", {})
    return int(result.scalar_one()) > 0
