"""Apply Alembic revisions (the schema's only source)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def migrations_dir() -> Path:
    configured = os.environ.get("BILLING_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    # src/commdesk_billing/db/migrate.py -> repository root
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def split_sql(script: str) -> list[str]:
    """Split a SQL script into statements.

    asyncpg runs one statement per call, so a migration's script is sent piece by piece.
    Semicolons inside dollar-quoted bodies, string literals and comments do not split.
    """
    statements: list[str] = []
    current: list[str] = []
    in_dollar = in_quote = False
    i = 0
    while i < len(script):
        ch = script[i]
        if not in_quote and script.startswith("$$", i):
            in_dollar = not in_dollar
            current.append("$$")
            i += 2
            continue
        if not in_dollar and not in_quote and script.startswith("--", i):
            # A comment runs to the end of its line; its apostrophes quote nothing.
            end = script.find("\n", i)
            i = len(script) if end == -1 else end
            continue
        if not in_dollar and ch == "'":
            in_quote = not in_quote
        if ch == ";" and not in_dollar and not in_quote:
            stmt = "".join(current).strip()
            if stmt:
                statements.append(stmt)
            current = []
        else:
            current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def execute_script(script: str) -> None:
    """Run a multi-statement SQL script inside the current migration's transaction."""
    from alembic import op

    for statement in split_sql(script):
        op.execute(statement)
