"""Billing notifications (modules/notifications): a record of every delivery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

- `notification_deliveries`: one row per (notification key, channel). The key is derived
  from the event's own identity (`payment.credited:<payment id>`, see
  `notifications/catalog.py`), so an event delivered twice, or announced twice, records
  one delivery per channel and is sent once. The consumer writes the rows; the scheduler's
  `deliver_notifications` job sends what is due outside any transaction and records the
  outcome: `pending` (due at `next_attempt_at`), `sent` (with `sent_at` and the provider's
  message id), `failed` (for good, after the last attempt or a permanent refusal) or
  `skipped` (the channel is not configured, or the user has no email address).
  The rendered message is kept in `content` (what was sent); the email address is not: it
  is read from `users` when the message is sent, and `recipient` holds it masked.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE notification_deliveries (
            id                  uuid PRIMARY KEY,
            notification_key    text NOT NULL CHECK (length(notification_key) BETWEEN 1 AND 300),
            channel             text NOT NULL CHECK (channel IN ('email', 'webhook')),
            event_type          text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]{0,99}$'),
            template            text NOT NULL CHECK (template ~ '^[a-z][a-z0-9_]{0,63}$'),
            user_id             uuid REFERENCES users (id),
            recipient           text CHECK (length(recipient) <= 300),
            content             jsonb NOT NULL,
            status              text NOT NULL
                                CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
            attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            last_error          text CHECK (length(last_error) <= 500),
            next_attempt_at     timestamptz,
            sent_at             timestamptz,
            provider_message_id text CHECK (length(provider_message_id) <= 300),
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            UNIQUE (notification_key, channel),
            -- Only a pending delivery is due; a sent one says when.
            CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
            CHECK ((status = 'sent') = (sent_at IS NOT NULL))
        );
        -- What the delivery job claims: the pending rows, by when they are due.
        CREATE INDEX notification_deliveries_due
            ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX notification_deliveries_user
            ON notification_deliveries (user_id, created_at) WHERE user_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE notification_deliveries;")
