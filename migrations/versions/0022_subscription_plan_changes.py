"""Plan changes of INR subscriptions (DESIGN §12, cashfree.md §12.5, §15).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

`subscription_plan_changes`: every upgrade of an INR subscription, whose prorated price for
the rest of the current period is raised as a charge on the member's mandate (a payment of
kind `subscription`). The new plan takes effect when that charge is PAID; a charge that ends
unpaid leaves the old plan and records why. One row per request, keyed
`subscription:<id>:upgrade:<request key>`; at most one open (raising or raised) per
subscription.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE subscription_plan_changes (
            id                uuid PRIMARY KEY,
            subscription_id   uuid NOT NULL REFERENCES subscriptions (id),
            operation_key     text NOT NULL UNIQUE,
            -- The period the change was asked in: the prorated price covers its rest.
            period_number     integer NOT NULL,
            from_plan_code    text NOT NULL,
            from_plan_version integer NOT NULL,
            to_plan_code      text NOT NULL,
            to_plan_version   integer NOT NULL,
            mandate_id        uuid NOT NULL REFERENCES mandates (id),
            price_paise       bigint NOT NULL CHECK (price_paise >= 100),
            payment_id        uuid UNIQUE REFERENCES payments (id),
            -- raising (written; its payment not yet) | raised (the payment exists) |
            -- applied (paid: the subscription is on the new plan) | failed (the payment
            -- ended unpaid or could not be raised: `failure`; the old plan stays) |
            -- unapplied (paid, but the subscription had moved on: money to refund)
            status            text NOT NULL CHECK (status IN ('raising', 'raised', 'applied',
                                                              'failed', 'unapplied')),
            failure           text,
            requested_at      timestamptz NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            FOREIGN KEY (subscription_id, period_number)
                REFERENCES subscription_periods (subscription_id, number)
        );
        CREATE UNIQUE INDEX subscription_plan_changes_one_open
            ON subscription_plan_changes (subscription_id)
            WHERE status IN ('raising', 'raised');
        """
    )


def downgrade() -> None:
    # A change is paid for (its payment is in the ledger): a database that holds any must be
    # restored from a backup, not walked back. An empty table goes quietly.
    execute_script(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM subscription_plan_changes) THEN
                RAISE EXCEPTION 'plan changes are paid for: restore a backup instead';
            END IF;
        END $$;
        DROP TABLE subscription_plan_changes;
        """
    )
