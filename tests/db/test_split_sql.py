"""Migrations' SQL is split on statements, not inside quotes or comments."""

from __future__ import annotations

from datetime import UTC, datetime

from commdesk_billing.db.migrate import split_sql

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def test_split_sql_respects_dollar_quotes_strings_and_comments() -> None:
    script = """
        CREATE TABLE a (x text DEFAULT ';');  -- it's a comment; with a semicolon
        CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
        SELECT 'it''s';
    """
    parts = split_sql(script)
    assert len(parts) == 3
    assert parts[1].endswith("END $$")
