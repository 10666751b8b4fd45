"""Invoice PDF benchmark: the CPU one tax document's PDF costs to draw.

    .venv/bin/python bench/invoice_pdf_bench.py [--rounds 5] [--documents 200]
        [--before REV] [--no-docs]

Each round:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. `render_pdf` over `documents` distinct documents of each shape: a B2C tax invoice as a
     purchase issues it (one page), a B2B inter-state credit note (one page), and a document
     whose buyer's address runs to a second page. The figure is process CPU time
     (`time.process_time`) per document.
  3. with `--before REV`, the same documents through `render_pdf` as it stood at git revision
     REV (its pdf.py loaded from git), for the comparison.
Medians over rounds go to bench/results/invoice_pdf.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from commdesk_billing.modules.invoices.document import DocumentKind, LineItem, Party, TaxDocument
from commdesk_billing.modules.invoices.pdf import render_pdf
from pgtools import ROOT, admin_sql, pgbench_init, pgbench_tps, publish_results, summarise

_PDF = "src/commdesk_billing/modules/invoices/pdf.py"
_ISSUED = datetime(2026, 11, 26, 20, 15, tzinfo=UTC)
_SELLER = Party(
    "CommDesk Technologies Private Limited",
    "2nd Floor, 100 Residency Road, Bengaluru, Karnataka 560025",
    "29AAACC0000A1Z5",
    "29",
)
Render = Callable[[TaxDocument], bytes]


def _invoice(n: int) -> TaxDocument:
    return TaxDocument(
        kind=DocumentKind.tax_invoice,
        number=f"CDB/2026/{n:06d}",
        issued_at=_ISSUED,
        seller=_SELLER,
        buyer=Party(f"Member {n}", None, None, "29", f"member{n}@example.com"),
        place_of_supply="29",
        lines=(
            LineItem(
                "CommDesk credits, Growth pack (1,000 credits + 100 bonus)",
                "998439",
                1,
                "pack",
                84_746,
                84_746,
                15_254,
            ),
        ),
        taxable_paise=84_746,
        cgst_paise=7_627,
        sgst_paise=7_627,
        igst_paise=0,
        total_paise=100_000,
        rate_bp=1800,
        gst_mode="inclusive",
        payment_reference=f"order ord_{n:08d}, Cashfree {5_000_000 + n}",
        payment_mode="UPI",
        payment_status="Paid",
    )


def _credit_note(n: int) -> TaxDocument:
    return TaxDocument(
        kind=DocumentKind.credit_note,
        number=f"CDC/2026/{n:06d}",
        issued_at=_ISSUED,
        seller=_SELLER,
        buyer=Party(
            f"Shah Traders {n} LLP",
            "14 Marine Drive, Churchgate, Mumbai, Maharashtra 400020",
            "27AAPFU0939F1ZV",
            "27",
            "accounts@shah.example",
        ),
        place_of_supply="27",
        lines=(
            LineItem(
                "Refund of CommDesk credits, Growth pack: 500 credits returned",
                "998439",
                1,
                "refund",
                42_373,
                42_373,
                7_627,
            ),
        ),
        taxable_paise=42_373,
        cgst_paise=0,
        sgst_paise=0,
        igst_paise=7_627,
        total_paise=50_000,
        rate_bp=1800,
        gst_mode="inclusive",
        payment_reference=f"order ord_{n:08d}, Cashfree cf_refund_{n}, refund rf_{n}",
        payment_mode="Card",
        payment_status="Partly refunded",
        original_number=f"CDB/2026/{n:06d}",
        original_issued_at=_ISSUED,
        reason="Unused credits",
    )


def _two_pages(n: int) -> TaxDocument:
    address = "Flat 12B, Sunshine Residency, Near The Old Temple And The Big Banyan Tree, " * 30
    doc = _invoice(n)
    return TaxDocument(**{**doc.__dict__, "buyer": Party(f"Member {n}", address, None, "29")})


SHAPES: dict[str, Callable[[int], TaxDocument]] = {
    "invoice": _invoice,
    "credit_note": _credit_note,
    "two_pages": _two_pages,
}


def _load_before(rev: str) -> Render:
    """`render_pdf` as it was at `rev`."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{_PDF}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "pdf_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pdf_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    render: Render = module.render_pdf
    return render


def _cpu_ms(render: Render, docs: list[TaxDocument]) -> float:
    started = time.process_time()
    for doc in docs:
        render(doc)
    return (time.process_time() - started) * 1000 / len(docs)


def _round(renders: dict[str, Render], count: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for shape, make in SHAPES.items():
        docs = [make(n) for n in range(count)]
        for name, render in renders.items():
            render(docs[0])  # warm: imports, font tables
            out[f"{name}_{shape}_ms"] = _cpu_ms(render, docs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--before", help="git revision whose render_pdf to compare against")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    renders: dict[str, Render] = {"after": render_pdf}
    if args.before:
        renders["before"] = _load_before(args.before)
    pgb = f"cdb_pdfpgbench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        pgbench_init(pgb, 16)
        for i in range(args.rounds):
            tps = pgbench_tps(pgb, 16, 10)
            measured = _round(renders, args.documents)
            rounds.append({"pgbench_tps": tps, **measured})
            shown = {k: round(v, 2) for k, v in measured.items()}
            print(f"round {i + 1}: pgbench {tps:.0f} tps, {shown}", flush=True)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, _ratio = summarise(rounds)
    command = (
        f".venv/bin/python bench/invoice_pdf_bench.py --rounds {args.rounds} "
        f"--documents {args.documents}" + (f" --before {args.before}" if args.before else "")
    )
    labels = {
        "invoice": "B2C tax invoice, one page",
        "credit_note": "B2B credit note (IGST), one page",
        "two_pages": "long address, two pages",
    }
    before = "before" in renders
    table = (
        "| CPU per document (`time.process_time`) | "
        + ("before: two passes, fpdf2 layout | " if before else "")
        + "after: one pass, own layout |\n|---|"
        + ("---:|" if before else "")
        + "---:|\n"
        + f"| pgbench TPC-B, 16 clients (yardstick) | {med('pgbench_tps'):,.0f} tps |"
        + (" |" if before else "")
        + "\n"
    )
    for shape, label in labels.items():
        table += f"| {label} | "
        if before:
            table += f"{med(f'before_{shape}_ms'):.1f} ms | "
        table += f"{med(f'after_{shape}_ms'):.2f} ms |\n"
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": rounds,
    }
    publish_results("invoice_pdf", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    sys.exit(main())
