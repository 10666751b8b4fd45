"""Refunds of payments that bought a service, not credits: an INR subscription period's
payment (kind `subscription`, charged on a mandate).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07

- `refunds.of_service`: the refund returns money a service was paid with. It takes no
  credits, from no lot, under no hold, and returns nothing held for someone else (no
  passthrough); its taxable value and GST come back out of subscription revenue and GST
  payable (`subscription.refund_owed`). `refunds_takes_something` learns the third kind.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE refunds ADD COLUMN of_service boolean NOT NULL DEFAULT false;
        ALTER TABLE refunds DROP CONSTRAINT refunds_takes_something;
        -- A credit refund takes credits from its purchase lot; a passthrough refund (of a
        -- sponsorship) takes none, from no lot, under no hold, and returns escrow; a service
        -- refund (of a subscription period) takes nothing and holds nothing.
        ALTER TABLE refunds ADD CONSTRAINT refunds_takes_something
            CHECK (CASE WHEN of_service
                        THEN purchase_lot_id IS NULL AND bonus_lot_id IS NULL
                             AND hold_id IS NULL AND base_credits + bonus_credits = 0
                             AND passthrough_paise = 0
                        WHEN purchase_lot_id IS NULL
                        THEN base_credits + bonus_credits = 0 AND passthrough_paise > 0
                             AND hold_id IS NULL
                        ELSE base_credits + bonus_credits > 0 AND passthrough_paise = 0 END);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE refunds DROP CONSTRAINT refunds_takes_something;
        ALTER TABLE refunds ADD CONSTRAINT refunds_takes_something
            CHECK (CASE WHEN purchase_lot_id IS NULL
                        THEN base_credits + bonus_credits = 0 AND passthrough_paise > 0
                             AND hold_id IS NULL
                        ELSE base_credits + bonus_credits > 0 AND passthrough_paise = 0 END);
        ALTER TABLE refunds DROP COLUMN of_service;
        """
    )
