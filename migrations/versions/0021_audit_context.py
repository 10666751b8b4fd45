"""Audit log: where each privileged action came from, what it changed, and a cursor to read it
(issue 16, "Audit logs").

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

- `audit_logs` learns the client's address (`ip`, inet), its user agent (bounded), the
  channel the action came through (`http`, `cli` for an operator's command, `consumer`,
  `job`), and what the target was and is (`before`, `after`, jsonb; NULL where the action
  creates or reads nothing to compare).
- Append-only already since 0001 (`audit_logs_append_only`, `audit_logs_no_truncate`, the
  ledger tables' `billing_refuse_change()`): checked here and created if a database lacks
  them, so no path leaves the log editable.
- `audit_logs_cursor` (created_at, id) serves `GET /v1/audit-logs` newest first; actions are
  filtered through `audit_logs_action`. The actor and target indexes of 0001 stay.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE audit_logs
            ADD COLUMN IF NOT EXISTS ip         inet,
            ADD COLUMN IF NOT EXISTS user_agent text
                CONSTRAINT audit_logs_user_agent_length CHECK (length(user_agent) <= 512),
            ADD COLUMN IF NOT EXISTS channel    text NOT NULL DEFAULT 'http'
                CONSTRAINT audit_logs_channel_check
                CHECK (channel IN ('http', 'cli', 'consumer', 'job')),
            ADD COLUMN IF NOT EXISTS before     jsonb,
            ADD COLUMN IF NOT EXISTS after      jsonb;

        CREATE INDEX IF NOT EXISTS audit_logs_cursor ON audit_logs (created_at DESC, id DESC);
        CREATE INDEX IF NOT EXISTS audit_logs_action ON audit_logs (action, created_at DESC);

        -- The refusals of 0001, made sure of: a database restored without them would
        -- otherwise hold an editable audit log without anyone noticing.
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_trigger
                            WHERE tgrelid = 'audit_logs'::regclass
                              AND tgname = 'audit_logs_append_only') THEN
                CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
                    FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_trigger
                            WHERE tgrelid = 'audit_logs'::regclass
                              AND tgname = 'audit_logs_no_truncate') THEN
                CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
                    FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            END IF;
        END $$;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX audit_logs_action;
        DROP INDEX audit_logs_cursor;
        ALTER TABLE audit_logs
            DROP COLUMN after,
            DROP COLUMN before,
            DROP COLUMN channel,
            DROP COLUMN user_agent,
            DROP COLUMN ip;
        """
    )
