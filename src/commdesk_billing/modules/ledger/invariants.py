"""The ledger's own checks for `ledger verify` (DESIGN §4): journals, chains, balances, seals.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.chain import entry_hash, seal_hash
from commdesk_billing.modules.ledger.seal import digest_rows, entries_between
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows


@check("journals")
async def journals(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every journal balances per ledger and has at least 2 legs; each ledger sums to 0;
    every leg's account exists, in its ledger and wallet."""
    for r in await rows(
        conn,
        """
            SELECT journal_id, ledger, sum(amount) AS total FROM ledger_entries
             GROUP BY journal_id, ledger HAVING sum(amount) <> 0""",
    ):
        report.add(
            "journal_balanced",
            f"journal {r.journal_id}",
            f"{r.ledger} legs sum to {r.total}, not 0",
        )
    for r in await rows(
        conn,
        """
            SELECT j.id, count(e.id) AS legs FROM ledger_journals j
              LEFT JOIN ledger_entries e ON e.journal_id = j.id
             GROUP BY j.id HAVING count(e.id) < 2""",
    ):
        report.add("journal_legs", f"journal {r.id}", f"has {r.legs} legs, needs at least 2")
    for r in await rows(
        conn,
        """
            SELECT ledger, sum(amount) AS total FROM ledger_entries
             GROUP BY ledger HAVING sum(amount) <> 0""",
    ):
        report.add("ledger_balanced", f"ledger {r.ledger}", f"all legs sum to {r.total}")
    for r in await rows(
        conn,
        """
            SELECT e.id, e.account_id FROM ledger_entries e
              LEFT JOIN ledger_accounts a ON a.id = e.account_id
             WHERE a.id IS NULL OR a.ledger <> e.ledger
                OR a.wallet_id IS DISTINCT FROM e.wallet_id""",
    ):
        report.add(
            "entry_account",
            f"entry {r.id}",
            f"account {r.account_id} is unknown or of another ledger/wallet",
        )
    report.stats["journals"] = await count(conn, "SELECT count(*) FROM ledger_journals")
    report.stats["entries"] = await count(conn, "SELECT count(*) FROM ledger_entries")


@check("wallet_chains")
async def wallet_chains(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every wallet's entries re-hash, in order, to the chain head on the wallet row."""
    heads = {r.id: r for r in await rows(conn, "SELECT id, chain_seq, chain_head FROM wallets")}
    codes = {
        r.id: r.code
        for r in await rows(
            conn, "SELECT id, code FROM ledger_accounts WHERE wallet_id IS NOT NULL"
        )
    }
    walked: dict[uuid.UUID, tuple[int, bytes | None]] = {}
    broken: set[uuid.UUID] = set()
    result = await conn.stream(
        text("""
        SELECT wallet_id, chain_seq, journal_id, account_id, ledger, amount, prev_hash,
               entry_hash, created_at
          FROM ledger_entries WHERE wallet_id IS NOT NULL ORDER BY wallet_id, chain_seq""")
    )
    async for e in result:
        if e.wallet_id in broken:
            continue
        seq, prev = walked.get(e.wallet_id, (0, None))
        subject = f"wallet {e.wallet_id} account {codes.get(e.account_id, e.account_id)}"
        if e.chain_seq != seq + 1:
            report.add(
                "wallet_chain",
                subject,
                f"entry #{seq + 1} is missing (next found is #{e.chain_seq})",
            )
            broken.add(e.wallet_id)
            continue
        stored_prev = bytes(e.prev_hash) if e.prev_hash is not None else None
        expected = entry_hash(
            prev=prev,
            wallet_id=e.wallet_id,
            seq=e.chain_seq,
            journal_id=e.journal_id,
            account_id=e.account_id,
            ledger=e.ledger,
            amount=e.amount,
            created_at=e.created_at,
        )
        if stored_prev != prev or bytes(e.entry_hash) != expected:
            report.add(
                "wallet_chain",
                subject,
                f"entry #{e.chain_seq} of journal {e.journal_id} does not match its hash "
                "(altered, inserted or reordered)",
            )
            broken.add(e.wallet_id)
            continue
        walked[e.wallet_id] = (e.chain_seq, expected)
    for wallet_id, w in heads.items():
        if wallet_id in broken:
            continue
        seq, head = walked.get(wallet_id, (0, None))
        stored = bytes(w.chain_head) if w.chain_head is not None else None
        if seq != w.chain_seq or head != stored:
            report.add(
                "wallet_chain",
                f"wallet {wallet_id}",
                f"chain ends at #{seq} but the wallet row says #{w.chain_seq} "
                "(entries removed, or the head was altered)",
            )
    report.stats["wallets"] = len(heads)


@check("wallet_balances")
async def wallet_balances(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every wallet row equals the sum of its entries (available and held), is not negative,
    and agrees with its active holds, its lots and its last statement line."""
    for r in await rows(
        conn,
        """
        WITH sums AS (
            SELECT account_id, -sum(amount) AS balance FROM ledger_entries
             WHERE wallet_id IS NOT NULL GROUP BY account_id
        ), lots AS (
            SELECT wallet_id, sum(credits_remaining) AS remaining FROM credit_lots
             GROUP BY wallet_id
        ), holds AS (
            SELECT wallet_id, sum(credits) AS held FROM wallet_holds WHERE status = 'active'
             GROUP BY wallet_id
        ), last_line AS (
            SELECT DISTINCT ON (wallet_id) wallet_id, balance_after, seq
              FROM wallet_transactions ORDER BY wallet_id, seq DESC
        )
        SELECT w.id, w.available_credits, w.locked_credits, w.statement_seq,
               coalesce(sa.balance, 0) AS ledger_available,
               coalesce(sh.balance, 0) AS ledger_locked,
               coalesce(l.remaining, 0) AS lots_remaining, coalesce(h.held, 0) AS held,
               ll.balance_after, coalesce(ll.seq, 0) AS last_seq
          FROM wallets w
          LEFT JOIN sums sa ON sa.account_id = w.available_account_id
          LEFT JOIN sums sh ON sh.account_id = w.held_account_id
          LEFT JOIN lots l ON l.wallet_id = w.id
          LEFT JOIN holds h ON h.wallet_id = w.id
          LEFT JOIN last_line ll ON ll.wallet_id = w.id""",
    ):
        subject = f"wallet {r.id}"
        if r.available_credits < 0 or r.locked_credits < 0:
            report.add("wallet_negative", subject, "balance below zero")
        if r.available_credits != r.ledger_available:
            report.add(
                "wallet_balance",
                subject + " account available",
                f"row says {r.available_credits}, entries sum to {r.ledger_available}",
            )
        if r.locked_credits != r.ledger_locked:
            report.add(
                "wallet_balance",
                subject + " account held",
                f"row says {r.locked_credits}, entries sum to {r.ledger_locked}",
            )
        if r.locked_credits != r.held:
            report.add(
                "wallet_holds",
                subject,
                f"locked {r.locked_credits} but active holds total {r.held}",
            )
        if r.available_credits + r.locked_credits != r.lots_remaining:
            report.add(
                "wallet_lots",
                subject,
                f"available + locked = {r.available_credits + r.locked_credits} but "
                f"lots hold {r.lots_remaining}",
            )
        if (r.balance_after or 0) != r.available_credits or r.last_seq != r.statement_seq:
            report.add(
                "wallet_statement",
                subject,
                f"last statement line #{r.last_seq} ends at {r.balance_after}, row says "
                f"{r.available_credits} at #{r.statement_seq}",
            )


@check("seals")
async def seals(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every seal block re-hashes from the previous one and still covers exactly the entries
    it sealed."""
    prev_hash: bytes | None = None
    prev_last = 0
    blocks = 0
    for s in await rows(
        conn,
        """
            SELECT block_no, first_entry_id, last_entry_id, entry_count, entries_digest,
                   prev_seal_hash, seal_hash FROM ledger_seals ORDER BY block_no""",
    ):
        subject = f"seal block {s.block_no}"
        blocks += 1
        if s.block_no != blocks:
            report.add("seal_chain", subject, f"block {blocks} is missing")
            return
        stored_prev = bytes(s.prev_seal_hash) if s.prev_seal_hash is not None else None
        expected = seal_hash(
            prev=prev_hash,
            block_no=s.block_no,
            first_entry_id=s.first_entry_id,
            last_entry_id=s.last_entry_id,
            entry_count=s.entry_count,
            digest=bytes(s.entries_digest),
        )
        if stored_prev != prev_hash or bytes(s.seal_hash) != expected:
            report.add("seal_chain", subject, "seal hash does not follow the previous block")
        sealed = await entries_between(conn, prev_last, s.last_entry_id)
        if len(sealed) != s.entry_count or digest_rows(sealed) != bytes(s.entries_digest):
            report.add(
                "seal_entries",
                subject,
                f"entries {prev_last + 1}..{s.last_entry_id} no longer match the seal "
                f"({len(sealed)} entries now, {s.entry_count} sealed)",
            )
        prev_hash = bytes(s.seal_hash)
        prev_last = s.last_entry_id
    report.stats["seal_blocks"] = blocks
    report.stats["unsealed_entries"] = await count(
        conn, "SELECT count(*) FROM ledger_entries WHERE id > :l", {"l": prev_last}
    )


CHECKS: tuple[Check, ...] = (journals, wallet_chains, wallet_balances)
# Run after every other module's checks (`wiring.verify_checks`), as they always have:
# the report ends with the seal figures.
SEAL_CHECKS: tuple[Check, ...] = (seals,)
