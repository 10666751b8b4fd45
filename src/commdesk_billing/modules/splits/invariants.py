"""The Easy Split checks for `ledger verify` (DESIGN §11, cashfree.md §14): what is due to
each vendor follows from the split sponsorships, their refunds and Cashfree's settlements,
and each settlement's journals say what its row says.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows

# `model.vendor_id_for`, in SQL.
_DERIVED = "('cdbc_' || left(encode(sha256(convert_to({col}, 'UTF8')), 'hex'), 40))"


@check("vendor_settlements_due")
async def vendor_settlements_due(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per vendor: what `inr:vendor_settlements_due` holds for it (the legs of journals
    naming it) = Σ the parts of its funded split sponsorships - Σ the parts their successful
    refunds took back - Σ its successful (not reversed) settlements. Over all: no leg of the
    account names no vendor, every vendor named is a community's, every vendor row's id is
    the one derived from its community's id, and so is every split sponsorship's vendor."""
    for r in await rows(
        conn,
        """
        WITH parts AS (
            SELECT s.vendor_id, sum(s.amount_paise) AS paise
              FROM sponsorships s
             WHERE s.path = 'split' AND s.status <> 'awaiting_payment'
             GROUP BY s.vendor_id
        ), refunded AS (
            SELECT s.vendor_id, sum(f.passthrough_paise) AS paise
              FROM refunds f JOIN sponsorships s ON s.payment_id = f.payment_id
             WHERE s.path = 'split' AND f.status = 'SUCCESS'
             GROUP BY s.vendor_id
        ), settled AS (
            SELECT vendor_id, sum(amount_paise) AS paise FROM vendor_settlements
             WHERE status = 'SUCCESS' GROUP BY vendor_id
        ), held AS (
            SELECT j.metadata->>'vendor_id' AS vendor_id, -sum(e.amount) AS paise
              FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
             WHERE e.account_id = :due
             GROUP BY j.metadata->>'vendor_id'
        ), vendors AS (
            SELECT vendor_id FROM parts UNION SELECT vendor_id FROM refunded
            UNION SELECT vendor_id FROM settled UNION SELECT vendor_id FROM held
        )
        SELECT v.vendor_id, coalesce(p.paise, 0) AS parts, coalesce(f.paise, 0) AS refunded,
               coalesce(t.paise, 0) AS settled, coalesce(h.paise, 0) AS held,
               EXISTS (SELECT 1 FROM split_vendors sv WHERE sv.vendor_id = v.vendor_id)
                   AS known
          FROM vendors v
          LEFT JOIN parts p ON p.vendor_id IS NOT DISTINCT FROM v.vendor_id
          LEFT JOIN refunded f ON f.vendor_id IS NOT DISTINCT FROM v.vendor_id
          LEFT JOIN settled t ON t.vendor_id IS NOT DISTINCT FROM v.vendor_id
          LEFT JOIN held h ON h.vendor_id IS NOT DISTINCT FROM v.vendor_id
         WHERE v.vendor_id IS NULL
            OR coalesce(h.paise, 0)
               <> coalesce(p.paise, 0) - coalesce(f.paise, 0) - coalesce(t.paise, 0)
            OR NOT EXISTS (SELECT 1 FROM split_vendors sv WHERE sv.vendor_id = v.vendor_id)""",
        {"due": House.VENDOR_SETTLEMENTS_DUE},
    ):
        report.add(
            "vendor_settlements_due",
            f"vendor {r.vendor_id}",
            f"the account holds {r.held} paise for it; its split parts {r.parts} - refunded "
            f"{r.refunded} - settled {r.settled} = {r.parts - r.refunded - r.settled}"
            + ("" if r.known else "; no community is this vendor"),
        )
    # A vendor is ours only under the id derived from its community's (`model.vendor_id_for`:
    # 'cdbc_' + 40 hex of SHA-256 of the id), and a split sponsorship's part goes to its own
    # community's vendor. A row pointed at another vendor at Cashfree, before anything was
    # paid to it, leaves every sum above in agreement with the redirect.
    derived = _DERIVED.format(col="community_id")
    for r in await rows(
        conn,
        f"""
        SELECT 'community ' || community_id AS subject, vendor_id, 'its vendor row' AS what
          FROM split_vendors WHERE vendor_id <> {derived}
        UNION ALL
        SELECT 'sponsorship ' || id, vendor_id, 'its split (community ' || community_id || ')'
          FROM sponsorships WHERE path = 'split' AND vendor_id <> {derived}""",
    ):
        report.add(
            "vendor_settlements_due",
            r.subject,
            f"{r.what} names vendor {r.vendor_id}, not the one derived from the community's id",
        )
    report.stats["split_vendors"] = await count(conn, "SELECT count(*) FROM split_vendors")


@check("vendor_settlements")
async def vendor_settlements(conn: AsyncConnection, report: VerifyReport) -> None:
    """A settlement's journals say what its row says: SUCCESS has exactly its settled
    journal (Dr due, Cr gateway clearing by its amount, naming its vendor); REVERSED after
    SUCCESS has that and the reversal (the same legs the other way); CREATED, FAILED and a
    REVERSED never seen to succeed have none. Its vendor is its community's. No settlement
    journal exists that no settlement names."""
    for r in await rows(
        conn,
        """
        SELECT v.settlement_id, v.status, v.amount_paise, v.vendor_id, sv.vendor_id AS own,
               s.kind AS s_kind, s.due AS s_due, s.clearing AS s_clearing, s.vendor AS s_vendor,
               s.other AS s_other, r.kind AS r_kind, r.due AS r_due,
               r.clearing AS r_clearing, r.other AS r_other
          FROM vendor_settlements v
          LEFT JOIN split_vendors sv ON sv.community_id = v.community_id
          LEFT JOIN LATERAL (
            SELECT j.kind, j.metadata->>'vendor_id' AS vendor,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :due), 0) AS due,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :clearing), 0)
                       AS clearing,
                   count(*) FILTER (WHERE e.account_id NOT IN (:due, :clearing)) AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.id = v.settled_journal_id GROUP BY j.id, j.kind) s ON true
          LEFT JOIN LATERAL (
            SELECT j.kind,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :due), 0) AS due,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :clearing), 0)
                       AS clearing,
                   count(*) FILTER (WHERE e.account_id NOT IN (:due, :clearing)) AS other
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.id = v.reversed_journal_id GROUP BY j.id, j.kind) r ON true
         WHERE sv.vendor_id IS DISTINCT FROM v.vendor_id
            OR (v.settled_journal_id IS NOT NULL
                AND (s.kind IS DISTINCT FROM 'split.vendor_settled'
                     OR s.due <> v.amount_paise OR s.clearing <> -v.amount_paise
                     OR s.vendor IS DISTINCT FROM v.vendor_id OR s.other <> 0))
            OR (v.reversed_journal_id IS NOT NULL
                AND (r.kind IS DISTINCT FROM 'split.vendor_settlement_reversed'
                     OR r.due <> -v.amount_paise OR r.clearing <> v.amount_paise
                     OR r.other <> 0))
            OR (v.status = 'SUCCESS') <> (v.settled_journal_id IS NOT NULL
                                          AND v.reversed_journal_id IS NULL)""",
        {"due": House.VENDOR_SETTLEMENTS_DUE, "clearing": House.GATEWAY_CLEARING},
    ):
        report.add(
            "vendor_settlement",
            f"settlement {r.settlement_id}",
            f"{r.status} of {r.amount_paise} for vendor {r.vendor_id} (its community's: "
            f"{r.own}); settled journal {r.s_kind}: {r.s_due} due, {r.s_clearing} clearing, "
            f"vendor {r.s_vendor}, {r.s_other} other; reversal {r.r_kind}: {r.r_due} due, "
            f"{r.r_clearing} clearing, {r.r_other} other",
        )
    for r in await rows(
        conn,
        """
        SELECT j.idempotency_key FROM ledger_journals j
         WHERE j.kind IN ('split.vendor_settled', 'split.vendor_settlement_reversed')
           AND NOT EXISTS (SELECT 1 FROM vendor_settlements v
                            WHERE v.settled_journal_id = j.id
                               OR v.reversed_journal_id = j.id)""",
    ):
        report.add(
            "vendor_settlement",
            f"journal {r.idempotency_key}",
            "a vendor settlement journal that no settlement names",
        )


CHECKS: tuple[Check, ...] = (vendor_settlements_due, vendor_settlements)
