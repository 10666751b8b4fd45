"""Cashfree's back-off, shared by every process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

Every Cashfree client our processes build (`gateway/factory.py`) records a 429 here: until
when Cashfree asked us to wait (its `x-ratelimit-retry`), which call it refused, how many
429s were seen in all. The scheduler's sync jobs announce no work while `until` is ahead,
so a rate limit slows the whole job down instead of a request or a consumer sleeping on it.
One row per gateway.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE gateway_backoff (
            gateway      text PRIMARY KEY CHECK (gateway ~ '^[a-z][a-z0-9_]{0,39}$'),
            -- No new background work for this gateway before this instant.
            until        timestamptz NOT NULL,
            -- The call the last 429 answered (the client's operation name) and its hint.
            op           text NOT NULL CHECK (length(op) <= 60),
            retry_after_s integer NOT NULL CHECK (retry_after_s >= 0),
            hits         bigint NOT NULL DEFAULT 1 CHECK (hits >= 1),
            last_seen_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE gateway_backoff;")
