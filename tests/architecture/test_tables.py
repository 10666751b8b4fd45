"""Every table has one owning module, and only its code names it in SQL (`tables.py`)."""

from __future__ import annotations

import re
from pathlib import Path

from commdesk_billing.tables import OWNERS, READ_ONLY_EVERYWHERE, SHARED

SRC = Path(__file__).resolve().parents[2] / "src" / "commdesk_billing"
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"
_NAMED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([a-z_]+)\b")
_WRITES = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_]+)\b")


def _package(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return "/".join(parts[:2]) if parts[0] == "modules" else parts[0]


def tables_named(text: str) -> set[str]:
    return {t for t in _NAMED.findall(text) if t in OWNERS}


def offenders() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[:2] == ("gateway", "sandbox"):  # it keeps its own store, no database
            continue
        package = _package(path)
        text = path.read_text()
        if path.name in READ_ONLY_EVERYWHERE:
            written = {t for t in _WRITES.findall(text) if t in OWNERS}
            found.extend(f"{rel} writes {t} (checks only read)" for t in sorted(written))
            continue
        written = {t for t in _WRITES.findall(text) if t in OWNERS}
        for table in sorted(tables_named(text)):
            if OWNERS[table] == package:
                continue
            shared = SHARED.get((package, table))
            if shared is None:
                found.append(f"{rel} names {table}, owned by {OWNERS[table]}")
            elif shared[0] == "reads" and table in written:
                found.append(f"{rel} writes {table}, which it may only read")
    return found


def test_every_table_of_the_schema_has_an_owner() -> None:
    created = set()
    for path in MIGRATIONS.glob("*.py"):
        created |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", path.read_text()))
    assert created == set(OWNERS)


def test_only_the_owner_names_its_tables_in_sql() -> None:
    assert offenders() == []


def test_every_shared_use_is_still_there() -> None:
    # An exception nobody needs any more is removed, not left to excuse a new one.
    for (package, table), (mode, _why) in SHARED.items():
        assert mode in ("reads", "writes")
        folder = SRC.joinpath(*package.split("/"))
        named = set().union(*(tables_named(p.read_text()) for p in folder.rglob("*.py")))
        assert table in named, f"{package} no longer uses {table}: drop it from SHARED"


def test_the_scan_sees_sql_in_any_form() -> None:
    assert tables_named('sql("SELECT 1 FROM payments p JOIN refunds r ON …")') == {
        "payments",
        "refunds",
    }
    assert tables_named("        UPDATE credit_lots SET x = 1") == {"credit_lots"}
    assert tables_named("INSERT INTO users (id) VALUES (:id)") == {"users"}
