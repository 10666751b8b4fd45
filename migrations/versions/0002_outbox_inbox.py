"""Queue backbone: transactional outbox and consumer inbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The outbox row is written in the same transaction as the state change it announces; a relay
publishes it and marks it sent. The inbox row is written in the same transaction as a
consumer's effect; a redelivered message finds it and changes nothing.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE outbox (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            message_id     uuid NOT NULL UNIQUE,
            queue          text NOT NULL CHECK (queue ~ '^[a-z][a-z0-9_.]{0,99}$'),
            message_type   text NOT NULL,
            body           text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            -- Delayed jobs: not published before this instant.
            available_at   timestamptz NOT NULL DEFAULT now(),
            sent_at        timestamptz,
            publish_errors integer NOT NULL DEFAULT 0,
            last_error     text
        );
        -- The relay's scan: unsent rows in id order, only those due.
        CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
        CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

        CREATE TABLE inbox (
            message_id   uuid NOT NULL,
            consumer     text NOT NULL,
            message_type text NOT NULL,
            processed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (message_id, consumer)
        );
        CREATE INDEX inbox_processed_at ON inbox (processed_at);
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE inbox; DROP TABLE outbox;")
