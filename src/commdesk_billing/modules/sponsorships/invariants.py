"""The sponsorships' checks for `ledger verify` (DESIGN §11): each sponsorship's journals
say what its rows say, and the escrow holds exactly the milestones not yet released.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows

_ACCOUNTS = {
    "clearing": House.GATEWAY_CLEARING,
    "fees": House.SPONSORSHIP_FEE_REVENUE,
    "gst": House.GST_PAYABLE,
    "escrow": House.SPONSORSHIP_ESCROW,
    "due": House.VENDOR_SETTLEMENTS_DUE,
}


@check("sponsorship_funding")
async def sponsorship_funding(conn: AsyncConnection, report: VerifyReport) -> None:
    """A sponsorship's figures are its payment's (total = amount, the community's part =
    passthrough, fee = taxable, GST = GST) and its fee is its rate of its amount; it is
    funded exactly when its payment was handed over (CREDITED), and its funding journal is
    Dr clearing total, Cr fee revenue fee, Cr GST payable GST, and Cr the community's part:
    to escrow (`sponsorship.funded`) on the escrow path, to vendor settlements due naming
    its vendor (`sponsorship.split_funded`) on the split path; nothing else, for the
    community the row names. No funding journal exists for a sponsorship that says it was
    not funded. Its sponsor is its payment's payer: a row redirected to another community or
    sponsor before its releases would otherwise agree with everything written after it."""
    for r in await rows(
        conn,
        """
        SELECT s.id, s.status, s.path, s.total_paise, s.amount_paise, s.fee_paise,
               s.gst_paise, s.community_id, x.community_id AS funded_for,
               s.sponsor_user_id = p.user_id AS payer,
               p.status AS payment_status, p.amount_paise AS p_amount,
               p.passthrough_paise AS p_pass, p.taxable_paise AS p_taxable,
               p.gst_amount_paise AS p_gst, x.kind, x.clearing, x.fees, x.gst, x.escrow,
               x.due, x.vendor, x.other
          FROM sponsorships s JOIN payments p ON p.id = s.payment_id
          LEFT JOIN LATERAL (
            SELECT j.kind, j.metadata->>'community_id' AS community_id,
                   j.metadata->>'vendor_id' AS vendor,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :clearing), 0)
                       AS clearing,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :fees), 0) AS fees,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :gst), 0) AS gst,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :escrow), 0) AS escrow,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :due), 0) AS due,
                   count(*) FILTER (WHERE e.account_id NOT IN (:clearing, :fees, :gst,
                                                               :escrow, :due)) AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.idempotency_key = 'sponsorship:' || s.id || '\\:funded'
             GROUP BY j.id, j.kind, j.metadata) x ON true
         WHERE (p.amount_paise, p.passthrough_paise, p.taxable_paise, p.gst_amount_paise)
               <> (s.total_paise, s.amount_paise, s.fee_paise, s.gst_paise)
            OR s.sponsor_user_id <> p.user_id
            OR s.fee_paise <> (2 * s.amount_paise * s.fee_bps + 10000) / 20000
            OR (s.status = 'awaiting_payment') <> (p.status <> 'CREDITED')
            OR (s.status = 'awaiting_payment' AND x.kind IS NOT NULL)
            OR (s.status <> 'awaiting_payment'
                AND (x.kind IS DISTINCT FROM CASE WHEN s.path = 'split'
                                                  THEN 'sponsorship.split_funded'
                                                  ELSE 'sponsorship.funded' END
                     OR x.clearing <> s.total_paise OR x.fees <> -s.fee_paise
                     OR x.gst <> -s.gst_paise
                     OR x.escrow <> CASE WHEN s.path = 'split' THEN 0
                                         ELSE -s.amount_paise END
                     OR x.due <> CASE WHEN s.path = 'split' THEN -s.amount_paise ELSE 0 END
                     OR (s.path = 'split' AND x.vendor IS DISTINCT FROM s.vendor_id)
                     OR x.other <> 0 OR x.community_id IS DISTINCT FROM s.community_id))""",
        _ACCOUNTS,
    ):
        report.add(
            "sponsorship_funding",
            f"sponsorship {r.id}",
            f"{r.status} ({r.path}) for community {r.community_id} (funded for "
            f"{r.funded_for}), {'its payer' if r.payer else 'not its payer'} the sponsor, "
            f"payment {r.payment_status} of {r.p_amount} ({r.p_pass} passthrough, "
            f"{r.p_taxable} taxable, {r.p_gst} GST); row says {r.total_paise} = "
            f"{r.amount_paise} + {r.fee_paise} + {r.gst_paise}; its {r.kind} journal moves "
            f"{r.clearing} clearing, {r.fees} fee, {r.gst} GST, {r.escrow} escrow, {r.due} "
            f"vendor due (vendor {r.vendor}), {r.other} other legs",
        )
    report.stats["sponsorships"] = await count(conn, "SELECT count(*) FROM sponsorships")


@check("sponsorship_releases")
async def sponsorship_releases(conn: AsyncConnection, report: VerifyReport) -> None:
    """A released milestone's journal is Dr escrow, Cr its community's payable, by its
    amount, nothing else; no release journal exists that no released milestone names."""
    for r in await rows(
        conn,
        """
        SELECT m.sponsorship_id, m.seq, m.amount_paise, x.kind, x.escrow, x.payable, x.other
          FROM sponsorship_milestones m JOIN sponsorships s ON s.id = m.sponsorship_id
          LEFT JOIN LATERAL (
            SELECT j.kind,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :escrow), 0) AS escrow,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = a.id), 0) AS payable,
                   count(*) FILTER (WHERE e.account_id NOT IN (:escrow, a.id)) AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
              -- ':' apart from 'payable', or it would read as a bind parameter.
              JOIN ledger_accounts a ON a.code = 'community:' || s.community_id || ':' || 'payable'
             WHERE j.id = m.release_journal_id
             GROUP BY j.id, j.kind) x ON true
         WHERE m.release_journal_id IS NOT NULL
           AND (x.kind IS DISTINCT FROM 'sponsorship.released'
                OR x.escrow <> m.amount_paise OR x.payable <> -m.amount_paise
                OR x.other <> 0)""",
        {"escrow": House.SPONSORSHIP_ESCROW},
    ):
        report.add(
            "sponsorship_release",
            f"sponsorship {r.sponsorship_id} milestone {r.seq}",
            f"its {r.kind} journal moves {r.escrow} escrow and {r.payable} payable "
            f"({r.other} other legs); the milestone says {r.amount_paise}",
        )
    for r in await rows(
        conn,
        """
        SELECT j.id, j.idempotency_key FROM ledger_journals j
         WHERE j.kind = 'sponsorship.released'
           AND NOT EXISTS (SELECT 1 FROM sponsorship_milestones m
                            WHERE m.release_journal_id = j.id)""",
    ):
        report.add(
            "sponsorship_release",
            f"journal {r.idempotency_key}",
            "a release journal that no released milestone names",
        )


@check("sponsorship_escrow")
async def sponsorship_escrow(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per sponsorship: its milestones add up to its amount, it is completed exactly when
    none is left in escrow, and the escrow holds for it (the legs of journals naming it)
    exactly its milestones neither released nor refunded once funded, nothing before. Over
    all: the escrow account = the same over funded sponsorships (no escrow leg outside
    them), and the fee revenue account = their fees less what successful refunds took."""
    for r in await rows(
        conn,
        """
        SELECT s.id, s.status, s.amount_paise, m.total, m.unreleased, m.open,
               coalesce(x.held, 0) AS held
          FROM sponsorships s
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(amount_paise), 0) AS total,
                   coalesce(sum(amount_paise) FILTER (
                       WHERE status IN ('pending', 'delivered', 'refunding')), 0) AS unreleased,
                   count(*) FILTER (WHERE status IN ('pending', 'delivered', 'refunding'))
                       AS open,
                   count(*) AS count_all
              FROM sponsorship_milestones WHERE sponsorship_id = s.id) m
          LEFT JOIN LATERAL (
            SELECT -sum(e.amount) AS held
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.metadata->>'sponsorship_id' = CAST(s.id AS text)
               AND e.account_id = :escrow) x ON true
         WHERE m.total <> s.amount_paise
            OR (s.path = 'escrow'
                AND ((s.status = 'completed') <> (m.open = 0)
                     OR coalesce(x.held, 0)
                        <> CASE WHEN s.status = 'awaiting_payment' THEN 0
                                ELSE m.unreleased END))
            -- The split path holds nothing in escrow, and its milestones stay informational.
            OR (s.path = 'split'
                AND (coalesce(x.held, 0) <> 0 OR s.status = 'completed' OR m.open <> m.count_all
                     OR m.unreleased <> s.amount_paise))""",
        {"escrow": House.SPONSORSHIP_ESCROW},
    ):
        report.add(
            "sponsorship_escrow",
            f"sponsorship {r.id}",
            f"{r.status}: the escrow holds {r.held} paise for it; its milestones add up to "
            f"{r.total} of {r.amount_paise}, {r.unreleased} unreleased ({r.open} open)",
        )
    [t] = await rows(
        conn,
        """
        SELECT (SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE account_id = :escrow)
                   AS escrow,
               (SELECT coalesce(sum(m.amount_paise), 0)
                  FROM sponsorship_milestones m JOIN sponsorships s ON s.id = m.sponsorship_id
                 WHERE s.status <> 'awaiting_payment' AND s.path = 'escrow'
                   AND m.status IN ('pending', 'delivered', 'refunding')) AS unreleased,
               (SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE account_id = :fees)
                   AS fees,
               (SELECT coalesce(sum(fee_paise), 0) FROM sponsorships
                 WHERE status <> 'awaiting_payment')
               - (SELECT coalesce(sum(f.taxable_paise), 0) FROM refunds f
                   WHERE f.status = 'SUCCESS' AND f.passthrough_paise > 0) AS fees_due""",
        {"escrow": House.SPONSORSHIP_ESCROW, "fees": House.SPONSORSHIP_FEE_REVENUE},
    )
    if t.escrow != t.unreleased:
        report.add(
            "sponsorship_escrow",
            "inr:sponsorship_escrow",
            f"the escrow account holds {t.escrow} paise; unreleased milestones of funded "
            f"sponsorships add up to {t.unreleased}",
        )
    if t.fees != t.fees_due:
        report.add(
            "sponsorship_fees",
            "inr:sponsorship_fee_revenue",
            f"the fee revenue account holds {t.fees} paise; funded sponsorships' fees less "
            f"refunded fees add up to {t.fees_due}",
        )


@check("sponsorship_refunds")
async def sponsorship_refunds(conn: AsyncConnection, report: VerifyReport) -> None:
    """A sponsorship's refund (a refund with a passthrough part) names milestones adding up
    to what it returns of escrow: refunding while it is open, refunded once it succeeded,
    none once it failed or was cancelled; a successful one's `refund:<id>:inr` journal is
    Cr refunds payable by its amount, Dr fee revenue its fee part, Dr GST payable its tax,
    Dr escrow its escrow part, nothing else."""
    for r in await rows(
        conn,
        """
        SELECT f.id, f.status, f.amount_paise, f.taxable_paise, f.passthrough_paise,
               f.cgst_paise + f.sgst_paise + f.igst_paise AS tax,
               coalesce(m.named, 0) AS named, coalesce(m.paise, 0) AS paise,
               coalesce(m.wrong, 0) AS wrong, x.kind, x.owed, x.fees, x.gst, x.escrow, x.other
          FROM refunds f
          LEFT JOIN LATERAL (
            SELECT count(*) AS named, sum(amount_paise) AS paise,
                   count(*) FILTER (WHERE status <> CASE
                       WHEN f.status = 'SUCCESS' THEN 'refunded' ELSE 'refunding' END)
                       AS wrong
              FROM sponsorship_milestones WHERE refund_id = f.id) m ON true
          LEFT JOIN LATERAL (
            SELECT j.kind,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :owed), 0) AS owed,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :fees), 0) AS fees,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :gst), 0) AS gst,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :escrow), 0) AS escrow,
                   count(*) FILTER (WHERE e.account_id NOT IN (:owed, :fees, :gst, :escrow))
                       AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.idempotency_key = 'refund:' || f.id || '\\:inr'
             GROUP BY j.id, j.kind) x ON true
         WHERE f.passthrough_paise > 0
           AND NOT EXISTS (SELECT 1 FROM sponsorships sp
                            WHERE sp.payment_id = f.payment_id AND sp.path = 'split')
           AND (CASE WHEN f.status IN ('FAILED', 'CANCELLED') THEN coalesce(m.named, 0) <> 0
                     ELSE coalesce(m.paise, 0) <> f.passthrough_paise
                          OR coalesce(m.wrong, 0) <> 0 END
                OR (f.status = 'SUCCESS'
                    AND (x.kind IS DISTINCT FROM 'sponsorship.refunded'
                         OR x.owed <> -f.amount_paise OR x.fees <> f.taxable_paise
                         OR x.gst <> f.cgst_paise + f.sgst_paise + f.igst_paise
                         OR x.escrow <> f.passthrough_paise OR x.other <> 0))
                OR (f.status <> 'SUCCESS' AND x.kind IS NOT NULL))""",
        {
            "owed": House.REFUNDS_PAYABLE,
            "fees": House.SPONSORSHIP_FEE_REVENUE,
            "gst": House.GST_PAYABLE,
            "escrow": House.SPONSORSHIP_ESCROW,
        },
    ):
        report.add(
            "sponsorship_refund",
            f"refund {r.id}",
            f"{r.status} refund of {r.amount_paise} ({r.passthrough_paise} escrow, "
            f"{r.taxable_paise} fee, {r.tax} GST) names {r.named} milestones of {r.paise} "
            f"({r.wrong} in the wrong state); its {r.kind} journal moves {r.owed} owed, "
            f"{r.fees} fee, {r.gst} GST, {r.escrow} escrow, {r.other} other legs",
        )


@check("sponsorship_split_refunds")
async def sponsorship_split_refunds(conn: AsyncConnection, report: VerifyReport) -> None:
    """A split sponsorship's refund names no milestone; a successful one's
    `refund:<id>:inr` journal is Cr refunds payable by its amount, Dr fee revenue its fee
    part, Dr GST payable its tax, Dr vendor settlements due its part of the community's
    share naming the sponsorship's vendor, nothing else; an unsuccessful one has none. Per
    split sponsorship: its refunded part is Σ its successful refunds' parts, and its
    standing refunds never return more than its part."""
    for r in await rows(
        conn,
        """
        SELECT f.id, f.status, f.amount_paise, f.taxable_paise, f.passthrough_paise,
               f.cgst_paise + f.sgst_paise + f.igst_paise AS tax, s.vendor_id,
               (SELECT count(*) FROM sponsorship_milestones m WHERE m.refund_id = f.id)
                   AS named,
               x.kind, x.owed, x.fees, x.gst, x.due, x.vendor, x.other
          FROM refunds f JOIN sponsorships s ON s.payment_id = f.payment_id
          LEFT JOIN LATERAL (
            SELECT j.kind, j.metadata->>'vendor_id' AS vendor,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :owed), 0) AS owed,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :fees), 0) AS fees,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :gst), 0) AS gst,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :due), 0) AS due,
                   count(*) FILTER (WHERE e.account_id NOT IN (:owed, :fees, :gst, :due))
                       AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.idempotency_key = 'refund:' || f.id || '\\:inr'
             GROUP BY j.id, j.kind) x ON true
         WHERE s.path = 'split'
           AND ((SELECT count(*) FROM sponsorship_milestones m WHERE m.refund_id = f.id) > 0
                OR f.passthrough_paise <= 0
                OR (f.status = 'SUCCESS'
                    AND (x.kind IS DISTINCT FROM 'sponsorship.split_refunded'
                         OR x.owed <> -f.amount_paise OR x.fees <> f.taxable_paise
                         OR x.gst <> f.cgst_paise + f.sgst_paise + f.igst_paise
                         OR x.due <> f.passthrough_paise
                         OR x.vendor IS DISTINCT FROM s.vendor_id OR x.other <> 0))
                OR (f.status <> 'SUCCESS' AND x.kind IS NOT NULL))""",
        {
            "owed": House.REFUNDS_PAYABLE,
            "fees": House.SPONSORSHIP_FEE_REVENUE,
            "gst": House.GST_PAYABLE,
            "due": House.VENDOR_SETTLEMENTS_DUE,
        },
    ):
        report.add(
            "sponsorship_split_refund",
            f"refund {r.id}",
            f"{r.status} refund of {r.amount_paise} ({r.passthrough_paise} of vendor "
            f"{r.vendor_id}'s part, {r.taxable_paise} fee, {r.tax} GST) names {r.named} "
            f"milestones; its {r.kind} journal moves {r.owed} owed, {r.fees} fee, {r.gst} GST, "
            f"{r.due} vendor due (vendor {r.vendor}), {r.other} other legs",
        )
    for r in await rows(
        conn,
        """
        SELECT s.id, s.amount_paise, s.split_refunded_paise,
               coalesce(sum(f.passthrough_paise) FILTER (WHERE f.status = 'SUCCESS'), 0)
                   AS refunded,
               coalesce(sum(f.passthrough_paise)
                        FILTER (WHERE f.status IN ('CREATED', 'PENDING', 'ONHOLD', 'SUCCESS')),
                        0) AS standing
          FROM sponsorships s LEFT JOIN refunds f ON f.payment_id = s.payment_id
         WHERE s.path = 'split'
         GROUP BY s.id, s.amount_paise, s.split_refunded_paise
        HAVING s.split_refunded_paise
                   <> coalesce(sum(f.passthrough_paise) FILTER (WHERE f.status = 'SUCCESS'), 0)
            OR coalesce(sum(f.passthrough_paise)
                        FILTER (WHERE f.status IN ('CREATED', 'PENDING', 'ONHOLD', 'SUCCESS')),
                        0) > s.amount_paise""",
    ):
        report.add(
            "sponsorship_split_refund",
            f"sponsorship {r.id}",
            f"says {r.split_refunded_paise} of its part of {r.amount_paise} was refunded; "
            f"its successful refunds returned {r.refunded} ({r.standing} standing)",
        )


@check("sponsorship_payables")
async def sponsorship_payables(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per community: what sponsorship journals put into its payable is Σ its released
    milestones (the spends' part of the payable is the communities' own check)."""
    for r in await rows(
        conn,
        """
        WITH want AS (
            SELECT s.community_id, sum(m.amount_paise) AS paise
              FROM sponsorship_milestones m JOIN sponsorships s ON s.id = m.sponsorship_id
             WHERE m.status = 'released' GROUP BY s.community_id
        ), got AS (
            SELECT substr(a.code, 11, length(a.code) - 18) AS community_id,
                   -sum(e.amount) AS paise
              FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
              JOIN ledger_accounts a ON a.id = e.account_id
             WHERE a.kind = 'community_payable' AND j.kind LIKE 'sponsorship.%'
             GROUP BY a.code
        )
        SELECT coalesce(w.community_id, g.community_id) AS community_id,
               coalesce(w.paise, 0) AS want, coalesce(g.paise, 0) AS got
          FROM want w FULL JOIN got g ON g.community_id = w.community_id
         WHERE coalesce(w.paise, 0) <> coalesce(g.paise, 0)""",
    ):
        report.add(
            "sponsorship_payable",
            f"community {r.community_id}",
            f"sponsorship journals put {r.got} paise into its payable; its released "
            f"milestones add up to {r.want}",
        )


CHECKS: tuple[Check, ...] = (
    sponsorship_funding,
    sponsorship_releases,
    sponsorship_escrow,
    sponsorship_refunds,
    sponsorship_split_refunds,
    sponsorship_payables,
)
