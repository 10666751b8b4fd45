"""House accounts found by an index: the house-balance read no longer scans every account.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07

`ledger_accounts_house`: the accounts that are not a wallet's, by code prefix
(`text_pattern_ops`, so `code LIKE 'inr:%'` is an index range whatever the collation). The
house-balance read (`ledger/gauges.py`) used to find its ~30 accounts by scanning every
account, two per wallet: that scan, not the roll-up, was what grew with the ledger (25 ms p99
at 100 000 wallets). Partial (no wallet account is in it), so creating a wallet writes nothing
more; built CONCURRENTLY outside the transaction (every new wallet inserts into the table).
"""

from __future__ import annotations

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build interrupted earlier leaves an INVALID index of this name: start again.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_accounts_house")
        op.execute(
            "CREATE INDEX CONCURRENTLY ledger_accounts_house"
            " ON ledger_accounts (code text_pattern_ops) WHERE wallet_id IS NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_accounts_house")
