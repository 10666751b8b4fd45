"""Outbox: commands that are sent once while one is still pending (no announcement storms).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

`outbox.send(..., unless_pending=True)` (the payment and refund syncs) stamps its row with a
`dedupe_key` (message type and correlation id). At most one unsent row per queue and key is
allowed by a partial unique index, so while the broker is away the sync adds one row per
open item however many times it runs, not one per run; a second index finds a key's rows
that were sent but are not consumed yet (the in-flight half of the rule, see `outbox.py`).

Rows written before this revision have no key; at most one extra row per open item can
follow them once. Both indexes cover only keyed rows.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE outbox ADD COLUMN dedupe_key text CHECK (length(dedupe_key) <= 300);
        -- At most one unsent row of a keyed command per queue: the constraint behind
        -- `send(..., unless_pending=True)` (INSERT ... ON CONFLICT DO NOTHING).
        CREATE UNIQUE INDEX outbox_pending_once ON outbox (queue, dedupe_key)
            WHERE sent_at IS NULL AND dedupe_key IS NOT NULL;
        -- A key's rows sent lately, to ask the inbox whether their consumer is done.
        CREATE INDEX outbox_dedupe_sent ON outbox (queue, dedupe_key, sent_at)
            WHERE dedupe_key IS NOT NULL;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX outbox_dedupe_sent;
        DROP INDEX outbox_pending_once;
        ALTER TABLE outbox DROP COLUMN dedupe_key;
        """
    )
