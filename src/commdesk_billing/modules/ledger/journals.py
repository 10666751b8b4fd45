"""Posting journals: the ledger's write API, for every module that moves a balance.

`post_journal` writes one journal on its own; `add_journals` adds journals to a caller's
composite statement (`db.write.CompositeWrite`), so a wallet operation's journal, entries
and business rows are one round trip. The journals themselves come from `postings`.

Journals are written in batches: any number of journals and their legs go into one INSERT
each (arrays through `unnest`), so a batch of wallet operations costs the same round trips as
one operation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
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


_JOURNALS_SQL = """
    INSERT INTO ledger_journals (id, idempotency_key, kind, description, metadata, created_at)
    SELECT * FROM unnest(CAST(:j_ids AS uuid[]), CAST(:j_keys AS text[]),
                         CAST(:j_kinds AS text[]), CAST(:j_descs AS text[]),
                         CAST(:j_metas AS jsonb[]), CAST(:j_ats AS timestamptz[]))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
"""

# Joining the journals part makes each leg depend on its journal row having been inserted
# by this statement: a journal key seen before inserts no legs at all.
_ENTRIES_SQL = """
    INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, wallet_id, chain_seq,
                                prev_hash, entry_hash, created_at)
    SELECT t.j, t.a, t.l, t.m, t.w, t.s, t.p, t.h, t.at
      FROM unnest(CAST(:e_journals AS uuid[]), CAST(:e_accounts AS uuid[]),
                  CAST(:e_ledgers AS text[]), CAST(:e_amounts AS bigint[]),
                  CAST(:e_wallets AS uuid[]), CAST(:e_seqs AS bigint[]),
                  CAST(:e_prevs AS bytea[]), CAST(:e_hashes AS bytea[]),
                  CAST(:e_ats AS timestamptz[]))
           WITH ORDINALITY AS t(j, a, l, m, w, s, p, h, at, n)
      JOIN {journals_part} AS inserted ON inserted.id = t.j
     ORDER BY t.n
    RETURNING id
"""


def add_journals(
    write: CompositeWrite, journals: Sequence[Journal], heads: dict[uuid.UUID, ChainHead]
) -> tuple[dict[uuid.UUID, ChainHead], str]:
    """Add the journals and their legs to `write`, in order; return the advanced chain heads
    and the name of the part whose rows are the inserted entries.

    Every leg on a wallet account must have its wallet's current head in `heads` (the caller
    holds that wallet's row lock). Legs of one wallet are chained in the order given.
    """
    new_heads = dict(heads)
    cols: dict[str, list[object]] = {
        k: []
        for k in (
            "journals",
            "accounts",
            "ledgers",
            "amounts",
            "wallets",
            "seqs",
            "prevs",
            "hashes",
            "ats",
        )
    }
    for journal in journals:
        for leg in journal.legs:
            seq: int | None = None
            prev: bytes | None = None
            digest: bytes | None = None
            if leg.wallet_id is not None:
                current = new_heads[leg.wallet_id]
                seq, prev = current.seq + 1, current.head
                digest = entry_hash(
                    prev=prev,
                    wallet_id=leg.wallet_id,
                    seq=seq,
                    journal_id=journal.id,
                    account_id=leg.account_id,
                    ledger=leg.ledger.value,
                    amount=leg.amount,
                    created_at=journal.created_at,
                )
                new_heads[leg.wallet_id] = ChainHead(seq=seq, head=digest)
            for key, value in (
                ("journals", journal.id),
                ("accounts", leg.account_id),
                ("ledgers", leg.ledger.value),
                ("amounts", leg.amount),
                ("wallets", leg.wallet_id),
                ("seqs", seq),
                ("prevs", prev),
                ("hashes", digest),
                ("ats", journal.created_at),
            ):
                cols[key].append(value)
    journals_part = write.add(
        _JOURNALS_SQL,
        {
            "j_ids": [j.id for j in journals],
            "j_keys": [j.idempotency_key for j in journals],
            "j_kinds": [j.kind for j in journals],
            "j_descs": [j.description for j in journals],
            "j_metas": [json.dumps(j.metadata) for j in journals],
            "j_ats": [j.created_at for j in journals],
        },
    )
    entries_part = write.add(
        _ENTRIES_SQL.format(journals_part=journals_part),
        {f"e_{k}": v for k, v in cols.items()},
    )
    return new_heads, entries_part


async def post_journal(conn: AsyncConnection, journal: Journal) -> bool:
    """Post a journal of house-account legs only. False when its key was posted before."""
    if any(leg.wallet_id is not None for leg in journal.legs):
        raise ValueError("wallet legs are posted by the wallet service, under the wallet lock")
    write = CompositeWrite()
    _, entries = add_journals(write, [journal], {})
    result = await write.execute(conn, f"SELECT count(*) FROM {entries}", {})
    return int(result.scalar_one()) > 0
