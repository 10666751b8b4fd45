"""Events out: the public event log, the endpoints CommDesk services register, and the
deliveries of each event to each endpoint with every attempt made.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07

- `webhook_events`: the public events (`modules/events/vocabulary.py`), one row per event,
  its id the one receivers dedupe on. Written by the `webhooks.outbound` consumer from the
  events the money modules announce through the outbox; read by `GET /v1/events`.
  Append-only, as `billing_events` is.
- `webhook_endpoints`: a receiver's URL, the event types it wants (none: all), whether it
  is enabled, and its signing secret, encrypted (Fernet, keys from the environment).
- `webhook_deliveries`: one per (endpoint, event), retried with backoff until it succeeds
  or its window ends.
- `webhook_attempts`: each POST made, its status code (or error) and duration.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE webhook_events (
            id          uuid PRIMARY KEY,
            event_type  text NOT NULL CHECK (event_type ~ '^[a-z_]+\\.[a-z_]+$'),
            data        jsonb NOT NULL,
            occurred_at timestamptz NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_events_recent ON webhook_events (created_at DESC, id DESC);
        CREATE INDEX webhook_events_type_recent
            ON webhook_events (event_type, created_at DESC, id DESC);
        CREATE TRIGGER webhook_events_append_only BEFORE UPDATE OR DELETE ON webhook_events
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();

        CREATE TABLE webhook_endpoints (
            id              uuid PRIMARY KEY,
            url             text NOT NULL CHECK (length(url) <= 2048),
            description     text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
            -- Empty: every event type.
            event_types     text[] NOT NULL DEFAULT '{}',
            enabled         boolean NOT NULL DEFAULT true,
            -- Fernet token of the signing secret (never the secret itself).
            secret_sealed   text NOT NULL,
            -- When deliveries to it started failing without a success since (NULL: not
            -- failing); past BILLING_WEBHOOK_DISABLE_AFTER_S the endpoint is disabled.
            failing_since   timestamptz,
            disabled_reason text CHECK (length(disabled_reason) <= 500),
            created_by      text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_endpoints_recent ON webhook_endpoints (created_at DESC, id DESC);

        CREATE TABLE webhook_deliveries (
            id              uuid PRIMARY KEY,
            endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
            event_id        uuid NOT NULL REFERENCES webhook_events (id),
            status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
            attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at timestamptz,
            -- The end of its retry window: an attempt failing after it fails it for good.
            give_up_at      timestamptz NOT NULL,
            last_status_code integer,
            last_error      text CHECK (length(last_error) <= 500),
            delivered_at    timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            UNIQUE (endpoint_id, event_id),
            CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
        );
        -- Each endpoint's due deliveries, oldest first (a round takes a few per endpoint).
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_endpoint
            ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

        CREATE TABLE webhook_attempts (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
            attempt      integer NOT NULL CHECK (attempt >= 1),
            attempted_at timestamptz NOT NULL,
            duration_ms  integer NOT NULL CHECK (duration_ms >= 0),
            status_code  integer,
            error        text CHECK (length(error) <= 500)
        );
        CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE webhook_attempts;
        DROP TABLE webhook_deliveries;
        DROP TABLE webhook_endpoints;
        DROP TABLE webhook_events;
        """
    )
