"""Financial analytics rollups (DESIGN §14): per-day buckets recomputed from source rows.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07

A day is an Indian calendar day (UTC+05:30), the day GST returns and settlements count in.
Each bucket is recomputed whole from the rows of its day (`modules/analytics/rollups.py`),
never incremented, so a redelivered event or a rebuild cannot count anything twice.

- `analytics_ledger_daily`: per day, account and journal kind, the debits and credits
  posted (paise on the INR ledger, credits on the CREDITS ledger). Revenue, fees, breakage,
  deferred revenue, refunds, community earnings and settlements are read from it, and the
  trial balance's opening, movement and closing.
- `analytics_activity_daily`: per day, metric and up to two keys, a count and an amount:
  payments by status and method, refunds and auto-recharges by status, settlements by
  status, fraud events by kind and severity.
- `analytics_days`: when each day's buckets were last recomputed. A day recomputed after it
  ended (plus a grace period) is settled: reads take it from the rollups; any other day is
  read from the source rows, so a figure is never behind the ledger.
- Indexes on the source tables' time columns, so one day is recomputed from its own rows.
  Built CONCURRENTLY, outside the migration's transaction (these tables are written all day).
"""

from __future__ import annotations

from alembic import op

from commdesk_billing.db.migrate import execute_script

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

# Source tables whose rows are bucketed by their `created_at`.
_TIME_INDEXES = {
    "analytics_src_ledger_entries": "ledger_entries (created_at)",
    "analytics_src_payments": "payments (created_at)",
    "analytics_src_refunds": "refunds (created_at)",
    "analytics_src_auto_recharges": "auto_recharges (created_at)",
    "analytics_src_settlements": "settlements (created_at)",
    "analytics_src_community_spends": "community_spends (created_at)",
}


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE analytics_ledger_daily (
            day          date NOT NULL,
            account_id   uuid NOT NULL REFERENCES ledger_accounts (id),
            journal_kind text NOT NULL,
            ledger       text NOT NULL CHECK (ledger IN ('INR', 'CREDITS')),
            debits       bigint NOT NULL CHECK (debits >= 0),
            credits      bigint NOT NULL CHECK (credits >= 0),
            entries      bigint NOT NULL CHECK (entries > 0),
            PRIMARY KEY (day, account_id, journal_kind)
        );
        CREATE INDEX analytics_ledger_daily_account ON analytics_ledger_daily (account_id, day);

        CREATE TABLE analytics_activity_daily (
            day     date NOT NULL,
            metric  text NOT NULL CHECK (metric ~ '^[a-z_]{1,40}$'),
            key1    text NOT NULL,
            key2    text NOT NULL DEFAULT '',
            events  bigint NOT NULL CHECK (events > 0),
            amount  bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (day, metric, key1, key2)
        );

        CREATE TABLE analytics_days (
            day          date PRIMARY KEY,
            refreshed_at timestamptz NOT NULL
        );
        """
    )
    with op.get_context().autocommit_block():
        for name, target in _TIME_INDEXES.items():
            # A build interrupted earlier leaves an INVALID index of this name: start again.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {target}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in _TIME_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    execute_script(
        """
        DROP TABLE analytics_days;
        DROP TABLE analytics_activity_daily;
        DROP TABLE analytics_ledger_daily;
        """
    )
