"""Auto-recharge on a mandate: a recharge whose charge Cashfree announced to the payer.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

- `auto_recharges.status` learns `notified`: the charge on the member's mandate was
  announced to them by Cashfree's pre-debit notice (the debit follows no earlier than 24 h
  later). It is in flight as `pending` is: the one-in-flight index and the settle job's
  index name it too.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE auto_recharges DROP CONSTRAINT auto_recharges_status_check;
        ALTER TABLE auto_recharges ADD CONSTRAINT auto_recharges_status_check
            CHECK (status IN ('requested', 'opening', 'pending', 'notified', 'succeeded',
                              'failed', 'skipped'));
        DROP INDEX auto_recharges_one_in_flight;
        CREATE UNIQUE INDEX auto_recharges_one_in_flight ON auto_recharges (wallet_id)
            WHERE status IN ('requested', 'opening', 'pending', 'notified');
        DROP INDEX auto_recharges_pending;
        CREATE INDEX auto_recharges_pending ON auto_recharges (opened_at)
            WHERE status IN ('pending', 'notified');
        """
    )


def downgrade() -> None:
    execute_script(
        """
        UPDATE auto_recharges SET status = 'pending' WHERE status = 'notified';
        DROP INDEX auto_recharges_pending;
        CREATE INDEX auto_recharges_pending ON auto_recharges (opened_at)
            WHERE status = 'pending';
        DROP INDEX auto_recharges_one_in_flight;
        CREATE UNIQUE INDEX auto_recharges_one_in_flight ON auto_recharges (wallet_id)
            WHERE status IN ('requested', 'opening', 'pending');
        ALTER TABLE auto_recharges DROP CONSTRAINT auto_recharges_status_check;
        ALTER TABLE auto_recharges ADD CONSTRAINT auto_recharges_status_check
            CHECK (status IN ('requested', 'opening', 'pending', 'succeeded', 'failed',
                              'skipped'));
        """
    )
