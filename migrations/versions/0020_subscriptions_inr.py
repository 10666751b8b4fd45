"""Subscriptions priced in INR, renewed on a UPI AutoPay / card mandate (DESIGN §12,
cashfree.md §12.5, §15).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

- `payments` learns the kind `subscription`: a period of an INR plan, the platform's own
  supply (taxable value + GST), buying no credits, raised as a charge on a mandate and handed
  to the subscriptions module when paid.
- A house account `inr:subscription_revenue` (credit-normal): what INR subscription periods
  earned, net of GST.
- `subscriptions` learns its mandate (`mandate_id`, INR plans only) and the status
  `pending` (an INR subscription whose first period is not paid yet: no service). A pending
  subscription is live for the one-live-subscription-per-plan rule.
- `subscription_periods` are priced in credits or in paise (exactly one).
- `subscription_mandate_charges`: every charge raised for an INR period, one per (period,
  attempt), keyed `subscription:<id>:period:<n>` (attempt 1) or `…:attempt:<k>` (a dunning
  retry), with the payment it became (set in the payment row's own transaction) and the
  attempt's outcome.
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_REVENUE = uuid.uuid5(_HOUSE_NS, "inr:subscription_revenue")


def upgrade() -> None:
    execute_script(
        f"""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES ('{_REVENUE}', 'inr:subscription_revenue', 'INR', 'subscription_revenue',
                'credit', true, 'INR subscription periods paid on a mandate, net of GST');

        ALTER TABLE payments DROP CONSTRAINT payments_kind_check;
        ALTER TABLE payments ADD CONSTRAINT payments_kind_check
            CHECK (kind IN ('pack', 'custom', 'sponsorship', 'subscription'));
        ALTER TABLE payments DROP CONSTRAINT payments_base_credits_check;
        ALTER TABLE payments ADD CONSTRAINT payments_base_credits_check
            CHECK (CASE WHEN kind IN ('sponsorship', 'subscription')
                        THEN base_credits = 0 AND bonus_credits = 0
                        ELSE base_credits > 0 END);
        -- A subscription period is raised on a mandate only.
        ALTER TABLE payments ADD CONSTRAINT payments_subscription_on_mandate
            CHECK (kind <> 'subscription' OR channel = 'mandate');

        ALTER TABLE subscriptions ADD COLUMN mandate_id uuid REFERENCES mandates (id);
        ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
        ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check
            CHECK (status IN ('pending', 'active', 'past_due', 'cancelled', 'expired'));
        DROP INDEX subscriptions_one_live_per_plan;
        CREATE UNIQUE INDEX subscriptions_one_live_per_plan ON subscriptions (user_id, plan_code)
            WHERE status IN ('pending', 'active', 'past_due');
        DROP INDEX subscriptions_due;
        CREATE INDEX subscriptions_due ON subscriptions (current_period_end)
            WHERE status IN ('pending', 'active', 'past_due');

        ALTER TABLE subscription_periods ALTER COLUMN price_credits DROP NOT NULL;
        ALTER TABLE subscription_periods
            ADD COLUMN price_paise bigint CHECK (price_paise >= 100),
            ADD CONSTRAINT subscription_periods_one_price
                CHECK ((price_credits IS NULL) <> (price_paise IS NULL));

        CREATE TABLE subscription_mandate_charges (
            subscription_id uuid NOT NULL,
            period_number   integer NOT NULL,
            attempt         integer NOT NULL CHECK (attempt >= 1),
            operation_key   text NOT NULL UNIQUE,
            mandate_id      uuid NOT NULL REFERENCES mandates (id),
            price_paise     bigint NOT NULL CHECK (price_paise >= 100),
            payment_id      uuid UNIQUE REFERENCES payments (id),
            -- raising | raised | paid | failed (the payment ended unpaid, or the mandate
            -- could not be charged: `failure`) | unapplied (paid, but no period took it:
            -- money for finance to refund)
            status          text NOT NULL CHECK (status IN ('raising', 'raised', 'paid',
                                                            'failed', 'unapplied')),
            failure         text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (subscription_id, period_number, attempt),
            FOREIGN KEY (subscription_id, period_number)
                REFERENCES subscription_periods (subscription_id, number)
        );
        -- At most one charge in flight per period, and one paid.
        CREATE UNIQUE INDEX subscription_mandate_charges_one_open
            ON subscription_mandate_charges (subscription_id, period_number)
            WHERE status IN ('raising', 'raised');
        CREATE UNIQUE INDEX subscription_mandate_charges_one_paid
            ON subscription_mandate_charges (subscription_id, period_number)
            WHERE status = 'paid';
        """
    )


def downgrade() -> None:
    raise NotImplementedError("subscription payments are in the ledger: restore a backup instead")
