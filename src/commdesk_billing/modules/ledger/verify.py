"""Re-walk the ledger: every chain, every seal, every invariant of DESIGN §4.

Read-only. Each finding names what is wrong (a journal, a wallet and its account, a seal
block) so a person can start from it. Runs in one REPEATABLE READ transaction so all checks
see the same snapshot while postings continue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.modules.ledger.chain import entry_hash, seal_hash
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.seal import digest_rows, entries_between


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.detail}"


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(check, subject, detail))


async def _rows(conn: AsyncConnection, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    return list((await conn.execute(text(sql), params or {})).all())


async def _journals(conn: AsyncConnection, report: VerifyReport) -> None:
    for r in await _rows(
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
    for r in await _rows(
        conn,
        """
            SELECT j.id, count(e.id) AS legs FROM ledger_journals j
              LEFT JOIN ledger_entries e ON e.journal_id = j.id
             GROUP BY j.id HAVING count(e.id) < 2""",
    ):
        report.add("journal_legs", f"journal {r.id}", f"has {r.legs} legs, needs at least 2")
    for r in await _rows(
        conn,
        """
            SELECT ledger, sum(amount) AS total FROM ledger_entries
             GROUP BY ledger HAVING sum(amount) <> 0""",
    ):
        report.add("ledger_balanced", f"ledger {r.ledger}", f"all legs sum to {r.total}")
    for r in await _rows(
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
    report.stats["journals"] = int(
        (await conn.execute(text("SELECT count(*) FROM ledger_journals"))).scalar_one()
    )
    report.stats["entries"] = int(
        (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
    )


async def _chains(conn: AsyncConnection, report: VerifyReport) -> None:
    heads = {r.id: r for r in await _rows(conn, "SELECT id, chain_seq, chain_head FROM wallets")}
    codes = {
        r.id: r.code
        for r in await _rows(
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


async def _balances(conn: AsyncConnection, report: VerifyReport) -> None:
    for r in await _rows(
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
    for r in await _rows(
        conn,
        """
        SELECT wallet_id, seq, balance_before, prev_after, prev_seq FROM (
            SELECT wallet_id, seq, balance_before,
                   lag(balance_after) OVER w AS prev_after, lag(seq) OVER w AS prev_seq
              FROM wallet_transactions WINDOW w AS (PARTITION BY wallet_id ORDER BY seq)
        ) t
         WHERE (prev_seq IS NULL AND (seq <> 1 OR balance_before <> 0))
            OR (prev_seq IS NOT NULL AND (seq <> prev_seq + 1 OR balance_before <> prev_after))
        """,
    ):
        report.add(
            "wallet_statement",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} does not follow line #{r.prev_seq} "
            f"(starts at {r.balance_before}, previous ended at {r.prev_after})",
        )
    for r in await _rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.credits_granted, l.credits_remaining, l.credits_refunded,
               coalesce(sum(m.credits), 0) AS moved
          FROM credit_lots l LEFT JOIN credit_lot_movements m ON m.lot_id = l.id
         GROUP BY l.id HAVING coalesce(sum(m.credits), 0) <> l.credits_remaining""",
    ):
        report.add(
            "lot_movements",
            f"wallet {r.wallet_id} lot {r.id}",
            f"remaining {r.credits_remaining} but its movements sum to {r.moved}",
        )


async def _lots_and_lines(conn: AsyncConnection, report: VerifyReport) -> None:
    """Tie lots and statement lines to the journals that must stand behind them."""
    for r in await _rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.source, j.kind FROM credit_lots l
          JOIN ledger_journals j ON j.id = l.journal_id
         WHERE j.kind <> 'grant.' || l.source
            OR NOT EXISTS (
                SELECT 1 FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                 WHERE e.journal_id = l.journal_id AND a.code = 'credits:issuance:' || l.source
                   AND e.amount = l.credits_granted)""",
    ):
        report.add(
            "lot_journal",
            f"wallet {r.wallet_id} lot {r.id}",
            f"a {r.source} lot, but its journal is a {r.kind} of another amount or account",
        )
    for r in await _rows(
        conn,
        """
        SELECT t.wallet_id, t.seq, t.balance_before - t.balance_after AS expected, x.moved
          FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(e.amount), 0) AS moved FROM ledger_entries e
             WHERE e.journal_id = t.journal_id AND e.account_id = w.available_account_id) x
         WHERE x.moved <> t.balance_before - t.balance_after""",
    ):
        report.add(
            "statement_journal",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} moves {r.expected} available credits, its journal "
            f"moves {r.moved}",
        )
    for r in await _rows(
        conn,
        """
        SELECT t.wallet_id, t.seq, t.transaction_type, t.credits,
               coalesce(sum(m.credits), 0) AS moved
          FROM wallet_transactions t
          LEFT JOIN credit_lot_movements m ON m.wallet_transaction_id = t.id
         GROUP BY t.id
        HAVING coalesce(sum(m.credits), 0) <> CASE
                 WHEN t.transaction_type IN ('purchase', 'bonus', 'promotional',
                                             'refund_reversal') THEN t.credits
                 WHEN t.transaction_type IN ('debit', 'capture', 'refund', 'expiry')
                     THEN -t.credits
                 ELSE 0 END""",
    ):
        report.add(
            "statement_lots",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} ({r.transaction_type} {r.credits}) moved {r.moved} "
            "credits of lots",
        )


async def _refunds(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every refund reversed exactly once (DESIGN §4), and never more than was bought."""
    for r in await _rows(
        conn,
        """
        SELECT w.id, coalesce(l.reserved, 0) AS reserved, coalesce(h.held, 0) AS held
          FROM wallets w
          LEFT JOIN (SELECT wallet_id, sum(credits_reserved) AS reserved FROM credit_lots
                      GROUP BY wallet_id) l ON l.wallet_id = w.id
          LEFT JOIN (SELECT wallet_id, sum(credits) AS held FROM wallet_holds
                      WHERE status = 'active' AND purpose = 'refund'
                      GROUP BY wallet_id) h ON h.wallet_id = w.id
         WHERE coalesce(l.reserved, 0) <> coalesce(h.held, 0)""",
    ):
        report.add(
            "refund_reservations",
            f"wallet {r.id}",
            f"lots reserve {r.reserved} credits, active refund holds hold {r.held}",
        )
    for r in await _rows(
        conn,
        """
        SELECT * FROM (
            SELECT f.id, f.status, f.amount_paise, h.status AS hold_status, x.journals,
                   x.paid_out
              FROM refunds f LEFT JOIN wallet_holds h ON h.id = f.hold_id
             CROSS JOIN LATERAL (
                SELECT count(DISTINCT j.id) AS journals,
                       coalesce(sum(e.amount) FILTER (
                           WHERE j.idempotency_key = 'refund:' || f.id || '\\:paid'
                             AND e.account_id = :clearing), 0) AS paid_out
                  FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
                 WHERE j.idempotency_key IN ('refund:' || f.id || '\\:inr',
                                             'refund:' || f.id || '\\:paid')) x
        ) r
         WHERE hold_status IS DISTINCT FROM CASE
                   WHEN status IN ('CREATED', 'PENDING', 'ONHOLD') THEN 'active'
                   WHEN status = 'SUCCESS' THEN 'captured' ELSE 'released' END
            OR journals <> CASE WHEN status = 'SUCCESS' THEN 2 ELSE 0 END
            OR (status = 'SUCCESS' AND paid_out <> -amount_paise)""",
        {"clearing": House.GATEWAY_CLEARING},
    ):
        report.add(
            "refund_reversal",
            f"refund {r.id}",
            f"{r.status} refund of {r.amount_paise} paise: hold {r.hold_status}, "
            f"{r.journals} refund journals, {-r.paid_out} paise paid out",
        )
    for r in await _rows(
        conn,
        """
        SELECT p.id, coalesce(p.refund_amount_paise, 0) AS recorded,
               coalesce(sum(f.amount_paise) FILTER (WHERE f.status = 'SUCCESS'), 0) AS done,
               p.amount_paise, p.taxable_paise, p.cgst_paise, p.sgst_paise, p.igst_paise,
               p.base_credits, p.bonus_credits,
               coalesce(sum(f.amount_paise), 0) AS amount,
               coalesce(sum(f.taxable_paise), 0) AS taxable,
               coalesce(sum(f.cgst_paise), 0) AS cgst,
               coalesce(sum(f.sgst_paise), 0) AS sgst,
               coalesce(sum(f.igst_paise), 0) AS igst,
               coalesce(sum(f.base_credits), 0) AS base,
               coalesce(sum(f.bonus_credits), 0) AS bonus
          FROM payments p
          LEFT JOIN refunds f
            ON f.payment_id = p.id AND f.status NOT IN ('FAILED', 'CANCELLED')
         WHERE p.refund_amount_paise IS NOT NULL
            OR EXISTS (SELECT 1 FROM refunds x WHERE x.payment_id = p.id)
         GROUP BY p.id
        HAVING coalesce(p.refund_amount_paise, 0)
                   <> coalesce(sum(f.amount_paise) FILTER (WHERE f.status = 'SUCCESS'), 0)
            OR sum(f.amount_paise) > p.amount_paise OR sum(f.taxable_paise) > p.taxable_paise
            OR sum(f.cgst_paise) > p.cgst_paise OR sum(f.sgst_paise) > p.sgst_paise
            OR sum(f.igst_paise) > p.igst_paise OR sum(f.base_credits) > p.base_credits
            OR sum(f.bonus_credits) > p.bonus_credits""",
    ):
        report.add(
            "refund_totals",
            f"payment {r.id}",
            f"records {r.recorded} paise refunded, successful refunds add to {r.done}; "
            f"standing refunds take {r.amount}/{r.amount_paise} paise, "
            f"{r.taxable}/{r.taxable_paise} taxable, {r.base}/{r.base_credits} credits, "
            f"{r.bonus}/{r.bonus_credits} bonus",
        )
    for r in await _rows(
        conn,
        """
        WITH takes AS (
            SELECT f.id, f.status, f.purchase_lot_id AS lot, f.base_credits AS credits
              FROM refunds f WHERE f.base_credits > 0
            UNION ALL
            SELECT f.id, f.status, f.bonus_lot_id, f.bonus_credits
              FROM refunds f WHERE f.bonus_credits > 0
        ), per_lot AS (
            SELECT lot,
                   sum(credits) FILTER (WHERE status IN ('CREATED', 'PENDING', 'ONHOLD'))
                       AS reserved,
                   sum(credits) FILTER (WHERE status = 'SUCCESS') AS refunded
              FROM takes GROUP BY lot
        )
        SELECT l.id, l.wallet_id, l.credits_reserved, l.credits_refunded,
               coalesce(p.reserved, 0) AS want_reserved, coalesce(p.refunded, 0) AS want_refunded
          FROM per_lot p JOIN credit_lots l ON l.id = p.lot
         WHERE l.credits_reserved <> coalesce(p.reserved, 0)
            OR l.credits_refunded <> coalesce(p.refunded, 0)""",
    ):
        report.add(
            "refund_lots",
            f"wallet {r.wallet_id} lot {r.id}",
            f"reserves {r.credits_reserved} and has refunded {r.credits_refunded} credits; its "
            f"refunds say {r.want_reserved} and {r.want_refunded}",
        )
    for r in await _rows(
        conn,
        """
        SELECT f.id, h.credits, f.base_credits + f.bonus_credits AS takes,
               coalesce(x.deferred, 0) AS deferred, coalesce(x.gst, 0) AS gst,
               f.taxable_paise, f.cgst_paise + f.sgst_paise + f.igst_paise AS tax, f.status
          FROM refunds f JOIN wallet_holds h ON h.id = f.hold_id
          LEFT JOIN LATERAL (
            SELECT sum(e.amount) FILTER (WHERE e.account_id = :deferred) AS deferred,
                   sum(e.amount) FILTER (WHERE e.account_id = :gst) AS gst
              FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
             WHERE j.idempotency_key = 'refund:' || f.id || '\\:inr') x ON true
         WHERE h.credits <> f.base_credits + f.bonus_credits
            OR (f.status = 'SUCCESS'
                AND (coalesce(x.deferred, 0) <> f.taxable_paise
                     OR coalesce(x.gst, 0) <> f.cgst_paise + f.sgst_paise + f.igst_paise))""",
        {"deferred": House.DEFERRED_REVENUE, "gst": House.GST_PAYABLE},
    ):
        report.add(
            "refund_amounts",
            f"refund {r.id}",
            f"holds {r.credits} credits for {r.takes}; reversed {r.deferred} deferred revenue "
            f"for {r.taxable_paise} taxable and {r.gst} GST for {r.tax}",
        )
    report.stats["refunds"] = int(
        (await conn.execute(text("SELECT count(*) FROM refunds"))).scalar_one()
    )


async def _documents(conn: AsyncConnection, report: VerifyReport) -> None:
    """Tax documents match what they document, and every series is gap-free."""
    for r in await _rows(
        conn,
        """
        SELECT i.number, i.total_paise, i.taxable_paise, i.cgst_paise, i.sgst_paise,
               i.igst_paise, coalesce(f.amount_paise, p.amount_paise) AS want_total,
               coalesce(f.taxable_paise, p.taxable_paise) AS want_taxable,
               coalesce(f.cgst_paise, p.cgst_paise) AS want_cgst,
               coalesce(f.sgst_paise, p.sgst_paise) AS want_sgst,
               coalesce(f.igst_paise, p.igst_paise) AS want_igst
          FROM invoices i JOIN payments p ON p.id = i.payment_id
          LEFT JOIN refunds f ON f.id = i.refund_id
         WHERE (i.total_paise, i.taxable_paise, i.cgst_paise, i.sgst_paise, i.igst_paise)
               <> (coalesce(f.amount_paise, p.amount_paise),
                   coalesce(f.taxable_paise, p.taxable_paise),
                   coalesce(f.cgst_paise, p.cgst_paise), coalesce(f.sgst_paise, p.sgst_paise),
                   coalesce(f.igst_paise, p.igst_paise))
            OR (i.refund_id IS NOT NULL AND f.status <> 'SUCCESS')""",
    ):
        report.add(
            "document_figures",
            f"document {r.number}",
            f"shows {r.total_paise} ({r.taxable_paise} + {r.cgst_paise}/{r.sgst_paise}/"
            f"{r.igst_paise}), what it documents is {r.want_total} ({r.want_taxable} + "
            f"{r.want_cgst}/{r.want_sgst}/{r.want_igst})",
        )
    for r in await _rows(
        conn,
        """
        SELECT s.series, s.fiscal_year, s.last_number, count(i.id) AS issued,
               coalesce(max(i.seq), 0) AS top
          FROM document_sequences s
          LEFT JOIN invoices i ON i.series = s.series AND i.fiscal_year = s.fiscal_year
         GROUP BY s.series, s.fiscal_year, s.last_number
        HAVING count(i.id) <> s.last_number OR coalesce(max(i.seq), 0) <> s.last_number""",
    ):
        report.add(
            "document_numbers",
            f"series {r.series} {r.fiscal_year}",
            f"{r.last_number} numbers taken, {r.issued} documents, highest {r.top}",
        )
    report.stats["documents"] = int(
        (await conn.execute(text("SELECT count(*) FROM invoices"))).scalar_one()
    )


async def _seals(conn: AsyncConnection, report: VerifyReport) -> None:
    prev_hash: bytes | None = None
    prev_last = 0
    blocks = 0
    for s in await _rows(
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
        rows = await entries_between(conn, prev_last, s.last_entry_id)
        if len(rows) != s.entry_count or digest_rows(rows) != bytes(s.entries_digest):
            report.add(
                "seal_entries",
                subject,
                f"entries {prev_last + 1}..{s.last_entry_id} no longer match the seal "
                f"({len(rows)} entries now, {s.entry_count} sealed)",
            )
        prev_hash = bytes(s.seal_hash)
        prev_last = s.last_entry_id
    report.stats["seal_blocks"] = blocks
    report.stats["unsealed_entries"] = int(
        (
            await conn.execute(
                text("SELECT count(*) FROM ledger_entries WHERE id > :l"), {"l": prev_last}
            )
        ).scalar_one()
    )


async def verify_ledger(engine: AsyncEngine) -> VerifyReport:
    report = VerifyReport()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await _journals(conn, report)
            await _chains(conn, report)
            await _balances(conn, report)
            await _lots_and_lines(conn, report)
            await _refunds(conn, report)
            await _documents(conn, report)
            await _seals(conn, report)
    return report
