"""The ledger's own checks for `ledger verify` (DESIGN §4): journals, chains, balances, seals.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.chain import seal_hash
from commdesk_billing.modules.ledger.verify import (
    Check,
    VerifyReport,
    check,
    count,
    in_turn,
    record_wallets,
    rows,
)

# An entry's hash body (`chain.entry_hash`) and seal line (`chain.seal_line`) rebuilt in SQL,
# so the walks hash in the database (sha256 in C) instead of a Python object per row. Same
# text byte for byte: uuids in their canonical form, integers in decimal, `created_at` as
# integer microseconds since the epoch (extract returns an exact numeric).
_MICROS = "(extract(epoch FROM e.created_at) * 1000000)::bigint"
_ENTRY_BODY = (
    "convert_to(concat_ws('|', e.wallet_id, e.chain_seq, e.journal_id, e.account_id, "
    f"e.ledger, e.amount, {_MICROS}), 'UTF8')"
)
_SEAL_LINE = (
    "concat(e.id, '|', e.journal_id, '|', e.account_id, '|', e.ledger, '|', e.amount, '|', "
    "e.wallet_id, '|', e.chain_seq, '|', encode(e.entry_hash, 'hex'), '|', "
    f"{_MICROS}, E'\\n')"
)
# Entries per chunk of a walk: one statement each, and a progress step.
_CHUNK_ENTRIES = 200_000
# A walk shared among backends is cut into at least this many runs per backend (runs of no
# fewer than `_SHARE_MIN_ENTRIES`), so that no backend is left with a long last run while the
# others are done: 510 000 entries in runs of 200 000 are 3 runs, 2 of them on one of two
# backends. Statement overhead per run is well under a millisecond.
_SHARE_RUNS = 4
_SHARE_MIN_ENTRIES = 10_000


@check("journals")
async def journals(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every journal balances per ledger and has at least 2 legs; each ledger sums to 0;
    every leg's account exists, in its ledger and wallet. Incremental: the journals with a
    leg after the checkpoint (a journal with no leg at all is found by a full run)."""
    since = report.since.through_entry_id
    touched = (
        ""
        if report.since.full
        else " AND journal_id IN (SELECT journal_id FROM ledger_entries WHERE id > :c)"
    )
    for r in await rows(
        conn,
        f"""
            SELECT journal_id, ledger, sum(amount) AS total FROM ledger_entries
             WHERE true{touched}
             GROUP BY journal_id, ledger HAVING sum(amount) <> 0""",
        {"c": since},
    ):
        report.add(
            "journal_balanced",
            f"journal {r.journal_id}",
            f"{r.ledger} legs sum to {r.total}, not 0",
        )
    legs_scope = (
        ""
        if report.since.full
        else " WHERE j.id IN (SELECT journal_id FROM ledger_entries WHERE id > :c)"
    )
    for r in await rows(
        conn,
        f"""
            SELECT j.id, count(e.id) AS legs FROM ledger_journals j
              LEFT JOIN ledger_entries e ON e.journal_id = j.id{legs_scope}
             GROUP BY j.id HAVING count(e.id) < 2""",
        {"c": since},
    ):
        report.add("journal_legs", f"journal {r.id}", f"has {r.legs} legs, needs at least 2")
    for r in await rows(
        conn,
        """
            SELECT ledger, sum(total) AS total FROM (
                SELECT a.ledger, v.balance AS total FROM ledger_verify_sums v
                  JOIN ledger_accounts a ON a.id = v.account_id WHERE :c > 0
                UNION ALL
                SELECT ledger, amount FROM ledger_entries WHERE id > :c
            ) t GROUP BY ledger HAVING sum(total) <> 0""",
        {"c": since},
    ):
        report.add("ledger_balanced", f"ledger {r.ledger}", f"all legs sum to {r.total}")
    for r in await rows(
        conn,
        """
            SELECT e.id, e.account_id FROM ledger_entries e
              LEFT JOIN ledger_accounts a ON a.id = e.account_id
             WHERE e.id > :c AND (a.id IS NULL OR a.ledger <> e.ledger
                OR a.wallet_id IS DISTINCT FROM e.wallet_id)""",
        {"c": since},
    ):
        report.add(
            "entry_account",
            f"entry {r.id}",
            f"account {r.account_id} is unknown or of another ledger/wallet",
        )
    if report.since.full:
        report.stats["journals"] = await count(conn, "SELECT count(*) FROM ledger_journals")
        report.stats["entries"] = await count(conn, "SELECT count(*) FROM ledger_entries")
    else:
        report.stats["entries_new"] = await count(
            conn, "SELECT count(*) FROM ledger_entries WHERE id > :c", {"c": since}
        )


def _run_entries(total: int, jobs: int) -> int:
    """Entries per run of a full walk of `total` entries on `jobs` backends."""
    if jobs <= 1:
        return _CHUNK_ENTRIES
    share = -(-total // (jobs * _SHARE_RUNS))
    return min(_CHUNK_ENTRIES, max(_SHARE_MIN_ENTRIES, share))


def _chunks(sizes: list[tuple[uuid.UUID, int]], target: int) -> list[tuple[uuid.UUID, int]]:
    """Cut wallets (in id order, with their chain lengths) into runs of about `target`
    entries: (first wallet id of the run, entries in it). The first run starts at the
    lowest uuid, so a chained entry of no wallet row is walked too."""
    out: list[tuple[uuid.UUID, int]] = [(uuid.UUID(int=0), 0)]
    for wallet_id, n in sizes:
        if out[-1][1] >= target:
            out.append((wallet_id, 0))
        out[-1] = (out[-1][0], out[-1][1] + n)
    return out


# One statement per run of wallets: re-hash every entry in the database, and check that it
# links to the previous one by its stored hashes. Stored links plus re-hashed rows are the
# chain re-walked: by induction from #1 (or from the checkpoint's verified entry), every
# stored hash is then the hash of its whole prefix.
#
# One pass over the run's entries, in chain order: `x` is read once (not materialized for a
# second reader), the count and the faults come out of one aggregate, and the entry before
# a walk's first one is looked up only for that first entry, once (`before_hash`: only an
# incremental walk starts mid-chain). A full walk reads each run of wallets as a range of
# the chain index `(wallet_id, chain_seq)`, already in window order (`_IN_CHAIN_ORDER`): a
# sequential scan per run would read the whole table once per run (quadratic in the
# ledger's size), and sorting spills to disk. An incremental walk reads the entries after
# the checkpoint by primary key and sorts those few. The last run has no upper bound (not
# `:hi IS NULL OR …`, which a generic plan could not turn into an index bound).
_CHAIN_SQL = f"""
WITH x AS (
    SELECT e.wallet_id, e.chain_seq, e.journal_id, e.account_id, e.prev_hash, e.entry_hash,
           sha256(coalesce(e.prev_hash, ''::bytea) || {_ENTRY_BODY}) AS recomputed,
           lag(e.entry_hash) OVER w AS prev_stored, lag(e.chain_seq) OVER w AS prev_seq
      FROM ledger_entries e
     WHERE e.wallet_id >= :lo{{below}} AND e.id > :c
    WINDOW w AS (PARTITION BY e.wallet_id ORDER BY e.chain_seq)
), y AS (
    -- The outer row alone decides whether to probe (a one-time filter of each rescan), so
    -- only a walk's first entry of a wallet, when it is not #1, reads the entry before it.
    SELECT x.*, b.entry_hash AS before_hash
      FROM x LEFT JOIN LATERAL (
           SELECT b.entry_hash FROM ledger_entries b
            WHERE x.prev_seq IS NULL AND x.chain_seq <> 1
              AND b.wallet_id = x.wallet_id AND b.chain_seq = x.chain_seq - 1
              AND b.id <= :c
           OFFSET 0) b ON true
), z AS (
    SELECT y.*,
           (y.prev_seq IS NULL AND y.chain_seq <> 1 AND y.before_hash IS NULL)
           OR (y.prev_seq IS NOT NULL AND y.chain_seq <> y.prev_seq + 1) AS gap,
           y.entry_hash IS DISTINCT FROM y.recomputed
           OR (y.prev_seq IS NULL AND y.chain_seq = 1 AND y.prev_hash IS NOT NULL)
           OR (y.prev_seq IS NULL AND y.chain_seq <> 1
               AND (y.before_hash IS NULL OR y.prev_hash IS DISTINCT FROM y.before_hash))
           OR (y.prev_seq IS NOT NULL AND (y.chain_seq <> y.prev_seq + 1
               OR y.prev_hash IS DISTINCT FROM y.prev_stored)) AS fault
      FROM y
)
SELECT count(*) AS walked,
       array_agg(z.wallet_id ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault)
           AS wallets,
       array_agg(z.chain_seq ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault)
           AS seqs,
       array_agg(z.journal_id ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault)
           AS journals,
       array_agg(z.account_id ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault)
           AS accounts,
       array_agg(z.gap ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault) AS gaps,
       array_agg(CASE WHEN z.prev_seq IS NOT NULL THEN z.prev_seq
                      WHEN z.before_hash IS NOT NULL THEN z.chain_seq - 1 ELSE 0 END
                 ORDER BY z.wallet_id, z.chain_seq) FILTER (WHERE z.fault) AS befores
  FROM z
"""

# Planner settings for a full walk's statements only (restored after): each run of wallets
# is read in the chain index's order, never sorted.
_IN_CHAIN_ORDER = {"enable_seqscan": "off", "enable_bitmapscan": "off", "enable_sort": "off"}


async def _set_local(conn: AsyncConnection, settings: dict[str, str]) -> dict[str, str]:
    """SET LOCAL each setting; returns what they were, to put back."""
    before: dict[str, str] = {}
    for name, value in settings.items():
        before[name] = str(
            (
                await conn.execute(
                    text("SELECT current_setting(:n), set_config(:n, :v, true)"),
                    {"n": name, "v": value},
                )
            ).scalar_one()
        )
    return before


async def _codes(conn: AsyncConnection, account_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not account_ids:
        return {}
    return {
        r.id: r.code
        for r in await rows(
            conn,
            "SELECT id, code FROM ledger_accounts WHERE id = ANY(CAST(:ids AS uuid[]))",
            {"ids": list(account_ids)},
        )
    }


@check("wallet_chains")
async def wallet_chains(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every wallet's entries re-hash, in order, to the chain head on the wallet row.
    Incremental: the entries after the checkpoint, from the verified entry before them, and
    the heads of the wallets they touched (an untouched wallet's row must still carry the
    verified head: `wallet_balances`)."""
    since = report.since.through_entry_id
    if report.touched is None:
        sizes = [
            (r.id, int(r.chain_seq))
            for r in await rows(conn, "SELECT id, chain_seq FROM wallets ORDER BY id")
        ]
        runs = _chunks(sizes, _run_entries(sum(n for _, n in sizes), report.jobs))
    else:
        runs = [(uuid.UUID(int=0), 0)]
    total = sum(n for _, n in runs)
    done = 0
    report.walked("wallet_chains", 0, total)
    # A full walk's runs are shared among `report.jobs` backends on this snapshot; each run's
    # result is kept in its place, so the findings come out in the order one backend gives.
    # An incremental walk is one statement: one backend.
    jobs = min(report.jobs, len(runs)) if report.touched is None else 1
    walked: list[Any] = [None] * len(runs)

    async def walk(c: AsyncConnection, i: int) -> None:
        nonlocal done
        hi = runs[i + 1][0] if i + 1 < len(runs) else None
        below = "" if hi is None else " AND e.wallet_id < :hi"
        [r] = await rows(
            c, _CHAIN_SQL.format(below=below), {"c": since, "lo": runs[i][0], "hi": hi}
        )
        walked[i] = r
        done += int(r.walked)
        report.walked("wallet_chains", done, max(total, done))

    restore = await _set_local(conn, _IN_CHAIN_ORDER) if report.touched is None else {}
    async with report.same_snapshot(conn, jobs) as conns:
        for helper in conns[1:]:  # rolled back at the end: nothing to restore
            await _set_local(helper, _IN_CHAIN_ORDER)
        await in_turn(conns, len(runs), walk)
    # Only after a walk that ended: one that failed or was cancelled ends the run, whose
    # transaction is rolled back with these settings (and `conn` may still be busy with a
    # cancelled statement, so a SET now would only hide why).
    if restore:
        await _set_local(conn, restore)
    faults: list[tuple[uuid.UUID, int, uuid.UUID, uuid.UUID, bool, int]] = []
    for r in walked:
        if r.wallets:
            faults += zip(r.wallets, r.seqs, r.journals, r.accounts, r.gaps, r.befores, strict=True)
    broken: set[uuid.UUID] = set()
    codes = await _codes(conn, {f[3] for f in faults})
    for wallet_id, seq, journal_id, account_id, gap, before_seq in faults:
        if wallet_id in broken:  # the first fault per wallet: the rest follow from it
            continue
        broken.add(wallet_id)
        subject = f"wallet {wallet_id} account {codes.get(account_id, account_id)}"
        if gap:
            report.add(
                "wallet_chain",
                subject,
                f"entry #{before_seq + 1} is missing (next found is #{seq})",
            )
        else:
            report.add(
                "wallet_chain",
                subject,
                f"entry #{seq} of journal {journal_id} does not match its hash "
                "(altered, inserted or reordered)",
            )
    # Each wallet row's head is its chain's last entry (walked now or before the checkpoint;
    # a later entry would have been walked above). Incremental: the touched wallets.
    scope = (
        "wallets w"
        if report.touched is None
        else "unnest(CAST(:touched AS uuid[])) s(id) JOIN wallets w ON w.id = s.id"
    )
    heads = 0
    for w in await rows(
        conn,
        f"""
        SELECT w.id, w.chain_seq, w.chain_head, coalesce(t.chain_seq, 0) AS last_seq,
               t.entry_hash AS last_hash
          FROM {scope}
          LEFT JOIN LATERAL (SELECT chain_seq, entry_hash FROM ledger_entries e
                              WHERE e.wallet_id = w.id
                              ORDER BY chain_seq DESC LIMIT 1) t ON true""",
        {"touched": report.touched},
    ):
        heads += 1
        if w.id in broken:
            continue
        if w.last_seq != w.chain_seq or w.last_hash != w.chain_head:
            report.add(
                "wallet_chain",
                f"wallet {w.id}",
                f"chain ends at #{w.last_seq} but the wallet row says #{w.chain_seq} "
                "(entries removed, or the head was altered)",
            )
    report.stats["wallets" if report.touched is None else "wallets_touched"] = heads


# Every wallet row against its entries (available and held), holds, lots and last statement
# line. Full: every wallet. Incremental: the touched wallets, their sums as the verified sums
# at the checkpoint plus their legs after it.
_BALANCES_SQL = """
WITH w AS (
    SELECT w.* FROM {scope}
), sums AS (
    -- Driven by the wallets' own accounts: a probe of the verified sums per account.
    SELECT a.account_id, -(coalesce(v.balance, 0) + coalesce(n.amount, 0)) AS balance
      FROM (SELECT available_account_id AS account_id FROM w
            UNION ALL SELECT held_account_id FROM w) a
      LEFT JOIN ledger_verify_sums v ON v.account_id = a.account_id AND :c > 0
      LEFT JOIN (SELECT account_id, sum(amount) AS amount FROM ledger_entries
                  WHERE wallet_id IS NOT NULL AND id > :c GROUP BY account_id) n
             ON n.account_id = a.account_id
), lots AS (
    -- Lots with no credits left add nothing: the FIFO index holds the others.
    SELECT wallet_id, sum(credits_remaining) AS remaining FROM credit_lots
     WHERE credits_remaining > 0 AND wallet_id IN (SELECT id FROM w)
     GROUP BY wallet_id
), holds AS (
    SELECT wallet_id, sum(credits) AS held FROM wallet_holds
     WHERE status = 'active' AND wallet_id IN (SELECT id FROM w)
     GROUP BY wallet_id
)
SELECT w.id, w.available_credits, w.locked_credits, w.statement_seq, w.chain_seq,
       w.chain_head, coalesce(sa.balance, 0) AS ledger_available,
       coalesce(sh.balance, 0) AS ledger_locked,
       coalesce(l.remaining, 0) AS lots_remaining, coalesce(h.held, 0) AS held,
       ll.balance_after, coalesce(ll.seq, 0) AS last_seq
  FROM w
  LEFT JOIN sums sa ON sa.account_id = w.available_account_id
  LEFT JOIN sums sh ON sh.account_id = w.held_account_id
  LEFT JOIN lots l ON l.wallet_id = w.id
  LEFT JOIN holds h ON h.wallet_id = w.id
  LEFT JOIN LATERAL (SELECT balance_after, seq FROM wallet_transactions t
                      WHERE t.wallet_id = w.id ORDER BY seq DESC LIMIT 1) ll ON true
"""

# Incremental: every wallet no entry touched since the checkpoint still says what the last
# clean run verified of it (it was then checked against all of the above), and its locked
# credits are still its active holds. Reads the wallets, the records and the active holds,
# never an entry, line or lot.
_UNTOUCHED_SQL = """
WITH holds AS (
    SELECT wallet_id, sum(credits) AS held FROM wallet_holds WHERE status = 'active'
     GROUP BY wallet_id
)
SELECT w.id, w.available_credits, w.locked_credits, w.statement_seq, w.chain_seq,
       w.chain_head, coalesce(k.available, 0) AS was_available,
       coalesce(k.locked, 0) AS was_locked, coalesce(k.statement_seq, 0) AS was_seq,
       coalesce(k.chain_seq, 0) AS was_chain_seq, k.chain_head AS was_head,
       coalesce(h.held, 0) AS held
  FROM wallets w
  LEFT JOIN ledger_verify_wallets k ON k.wallet_id = w.id
  LEFT JOIN holds h ON h.wallet_id = w.id
 WHERE NOT EXISTS (SELECT 1 FROM unnest(CAST(:touched AS uuid[])) s(id) WHERE s.id = w.id)
   AND (w.available_credits <> coalesce(k.available, 0)
        OR w.locked_credits <> coalesce(k.locked, 0)
        OR w.statement_seq <> coalesce(k.statement_seq, 0)
        OR w.chain_seq <> coalesce(k.chain_seq, 0)
        OR w.chain_head IS DISTINCT FROM k.chain_head
        OR w.locked_credits <> coalesce(h.held, 0))
"""


@check("wallet_balances")
async def wallet_balances(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every wallet row equals the sum of its entries (available and held), is not negative,
    and agrees with its active holds, its lots and its last statement line. Incremental: the
    touched wallets so (the sums are the verified sums at the checkpoint plus the legs after
    it); every other wallet row must equal what the last clean run verified, and its locked
    credits its active holds. The rows verified are recorded for the next run."""
    full = report.touched is None
    scope = (
        "wallets w"
        if full
        else "unnest(CAST(:touched AS uuid[])) s(id) JOIN wallets w ON w.id = s.id"
    )
    verified = await rows(
        conn,
        _BALANCES_SQL.format(scope=scope),
        {"c": report.since.through_entry_id, "touched": report.touched},
    )
    for r in verified:
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
    if not full:
        for r in await rows(conn, _UNTOUCHED_SQL, {"touched": report.touched}):
            _untouched(report, r)

    async def record(c: AsyncConnection) -> None:
        await record_wallets(c, verified, replace_all=full)

    report.on_checkpoint(record)


def _untouched(report: VerifyReport, r: Any) -> None:
    subject = f"wallet {r.id}"
    since = "with no entry since the last verification"
    if r.available_credits != r.was_available or r.locked_credits != r.was_locked:
        report.add(
            "wallet_balance",
            subject,
            f"row says {r.available_credits} available, {r.locked_credits} locked "
            f"{since}, which saw {r.was_available} and {r.was_locked}",
        )
    if r.statement_seq != r.was_seq:
        report.add(
            "wallet_statement",
            subject,
            f"row says statement line #{r.statement_seq} {since}, which saw #{r.was_seq}",
        )
    if r.chain_seq != r.was_chain_seq or r.chain_head != r.was_head:
        report.add(
            "wallet_chain",
            subject,
            f"row says chain #{r.chain_seq} {since}, which saw #{r.was_chain_seq} "
            "(the head was altered)",
        )
    if r.locked_credits != r.held:
        report.add(
            "wallet_holds",
            subject,
            f"locked {r.locked_credits} but active holds total {r.held}",
        )


# Blocks per statement of the seal walk (5 000 entries each by default).
_SEAL_BLOCKS = 40

# One statement per run of blocks: each block's entries re-hashed in the database, as the
# sealer's digest (`seal.digest_rows`) hashed them.
_SEALS_SQL = f"""
SELECT s.block_no, s.first_entry_id, s.last_entry_id, s.entry_count, s.entries_digest,
       s.prev_seal_hash, s.seal_hash, d.n, d.digest
  FROM ledger_seals s
 CROSS JOIN LATERAL (
       SELECT count(*) AS n,
              sha256(convert_to(coalesce(string_agg({_SEAL_LINE}, '' ORDER BY e.id), ''),
                                'UTF8')) AS digest
         FROM ledger_entries e
        WHERE e.id > coalesce((SELECT p.last_entry_id FROM ledger_seals p
                                WHERE p.block_no = s.block_no - 1), :after)
          AND e.id <= s.last_entry_id) d
 WHERE s.block_no > :b0 AND s.block_no <= :b1
 ORDER BY s.block_no
"""


@check("seals")
async def seals(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every seal block re-hashes from the previous one and still covers exactly the entries
    it sealed. Incremental: the blocks after the checkpoint's, from its hash (and that block
    must still carry it)."""
    since = report.since
    prev_hash: bytes | None = since.seal_hash
    prev_last = since.through_entry_id
    blocks = since.block_no
    if not since.full:
        stored = (
            await conn.execute(
                text("SELECT seal_hash FROM ledger_seals WHERE block_no = :b"),
                {"b": since.block_no},
            )
        ).scalar_one_or_none()
        if stored is None or bytes(stored) != since.seal_hash:
            report.add(
                "seal_chain",
                f"seal block {since.block_no}",
                "no longer carries the hash the last verification saw (sealed history was "
                "rewritten: run `ledger verify --full`)",
            )
            return
    newest = int(
        (
            await conn.execute(text("SELECT coalesce(max(block_no), 0) FROM ledger_seals"))
        ).scalar_one()
    )
    to_walk = (
        int(
            (
                await conn.execute(
                    text(
                        "SELECT coalesce(max(last_entry_id), 0) FROM ledger_seals"
                        " WHERE block_no = :b"
                    ),
                    {"b": newest},
                )
            ).scalar_one()
        )
        - prev_last
    )
    walked = 0
    b0 = since.block_no
    report.walked("seals", 0, to_walk)
    while b0 < newest:
        b1 = min(b0 + _SEAL_BLOCKS, newest)
        found = await rows(conn, _SEALS_SQL, {"b0": b0, "b1": b1, "after": prev_last})
        for s in found:
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
            if s.n != s.entry_count or bytes(s.digest) != bytes(s.entries_digest):
                report.add(
                    "seal_entries",
                    subject,
                    f"entries {prev_last + 1}..{s.last_entry_id} no longer match the seal "
                    f"({s.n} entries now, {s.entry_count} sealed)",
                )
            walked += int(s.n)
            prev_hash = bytes(s.seal_hash)
            prev_last = s.last_entry_id
        if len(found) < b1 - b0:
            report.add("seal_chain", f"seal block {blocks + 1}", f"block {blocks + 1} is missing")
            return
        b0 = b1
        report.walked("seals", walked, max(to_walk, walked))
    report.stats["seal_blocks"] = blocks
    report.stats["unsealed_entries"] = await count(
        conn, "SELECT count(*) FROM ledger_entries WHERE id > :l", {"l": prev_last}
    )


@check("rollups")
async def rollups(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every account's roll-up (`ledger_rollups`, kept by the sealer) equals the sum of its
    legs up to the last seal, to the paisa or credit. Incremental: the verified sums at the
    checkpoint plus the legs between it and the last seal."""
    for r in await rows(
        conn,
        """
        WITH sealed AS (
            SELECT coalesce((SELECT last_entry_id FROM ledger_seals
                              ORDER BY block_no DESC LIMIT 1), 0) AS through
        ), expected AS (
            SELECT account_id, sum(amount) AS balance FROM (
                SELECT v.account_id, v.balance AS amount FROM ledger_verify_sums v
                  JOIN ledger_accounts a ON a.id = v.account_id
                 WHERE :c > 0 AND a.wallet_id IS NULL
                UNION ALL
                SELECT e.account_id, e.amount FROM ledger_entries e, sealed
                 WHERE e.wallet_id IS NULL AND e.id > :c AND e.id <= sealed.through
            ) t GROUP BY account_id
        )
        SELECT coalesce(r.account_id, x.account_id) AS account_id,
               coalesce(r.balance, 0) AS rolled, coalesce(x.balance, 0) AS summed
          FROM ledger_rollups r FULL JOIN expected x ON x.account_id = r.account_id
         WHERE coalesce(r.balance, 0) <> coalesce(x.balance, 0)""",
        {"c": report.since.through_entry_id},
    ):
        report.add(
            "ledger_rollup",
            f"account {r.account_id}",
            f"roll-up says {r.rolled}, its sealed legs sum to {r.summed}",
        )


CHECKS: tuple[Check, ...] = (journals, wallet_chains, wallet_balances)
# Run after every other module's checks (`wiring.verify_checks`), as they always have:
# the report ends with the seal figures.
SEAL_CHECKS: tuple[Check, ...] = (seals, rollups)
