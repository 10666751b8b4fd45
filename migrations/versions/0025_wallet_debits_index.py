"""An index for a wallet's recent consumption (auto-recharge's predictive level).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07

`wallet.debited_since` sums a set of wallets' debits, captures and community spends since an
instant (the burn rate `modules/autorecharge/predict.py` levels on). Without this index it
read every transaction of each wallet through `(wallet_id, seq)`; with it, only the window.
Partial on the consuming kinds, so grants and holds do not grow it.

Built CONCURRENTLY, outside the migration's transaction: `wallet_transactions` is written by
every debit, and a plain CREATE INDEX would hold their writes for the whole build.
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build interrupted earlier leaves an INVALID index of this name: start again.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS wallet_transactions_consumed")
        op.execute(
            "CREATE INDEX CONCURRENTLY wallet_transactions_consumed"
            " ON wallet_transactions (wallet_id, created_at)"
            " WHERE transaction_type IN ('debit', 'capture', 'community_spend')"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS wallet_transactions_consumed")
