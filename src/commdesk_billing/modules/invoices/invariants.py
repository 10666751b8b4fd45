"""The tax documents' checks for `ledger verify`: documents match what they document, and
every series is gap-free.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows


@check("document_figures")
async def document_figures(conn: AsyncConnection, report: VerifyReport) -> None:
    """An invoice shows its payment's figures (the platform's supply in it: taxable + GST,
    which is all of a purchase), a credit note those of its refund (less what it returned
    of money collected for someone else), which succeeded."""
    for r in await rows(
        conn,
        """
        SELECT i.number, i.total_paise, i.taxable_paise, i.cgst_paise, i.sgst_paise,
               i.igst_paise,
               coalesce(f.amount_paise - f.passthrough_paise,
                        p.taxable_paise + p.gst_amount_paise) AS want_total,
               coalesce(f.taxable_paise, p.taxable_paise) AS want_taxable,
               coalesce(f.cgst_paise, p.cgst_paise) AS want_cgst,
               coalesce(f.sgst_paise, p.sgst_paise) AS want_sgst,
               coalesce(f.igst_paise, p.igst_paise) AS want_igst
          FROM invoices i JOIN payments p ON p.id = i.payment_id
          LEFT JOIN refunds f ON f.id = i.refund_id
         WHERE (i.total_paise, i.taxable_paise, i.cgst_paise, i.sgst_paise, i.igst_paise)
               <> (coalesce(f.amount_paise - f.passthrough_paise,
                            p.taxable_paise + p.gst_amount_paise),
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
    report.stats["documents"] = await count(conn, "SELECT count(*) FROM invoices")


@check("document_numbers")
async def document_numbers(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every series has issued exactly the numbers its counter took, 1 to the last."""
    for r in await rows(
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


CHECKS: tuple[Check, ...] = (document_figures, document_numbers)
