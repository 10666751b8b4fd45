"""Auto-recharge (DESIGN §12): a wallet's settings, its recharges and the decisions taken.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

- `wallets.auto_recharge_trigger`: the effective trigger level (credits) the debit paths
  compare against, kept by the autorecharge module through a wallet service function. NULL
  when auto-recharge is off: such a wallet costs its debits nothing more than a NULL check.
- `auto_recharge_settings`: one row per wallet that ever set auto-recharge up: the pack or
  amount to buy, the caps, the failure limit, and the running guard state (consecutive
  failures, the back-off's end, the burn rate and the predicted level last computed).
  `mandate_id` is the seam of the mandate branch: always NULL until mandates exist.
- `auto_recharges`: one per request a crossing wrote. At most one in flight per wallet
  (`requested`, `opening` or `pending`): a partial unique index, so two crossings racing
  can never both insert one. `order_request` is the order it opens, fixed when it passes
  its guards, so a redelivery opens (resumes) the very same order whatever the member
  changed in the settings since. `left_below`: a success that did not lift the wallet back
  to its level (the levels job asks once more after the cooldown).
- `auto_recharge_events`: the append-only decision log the member reads.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE wallets ADD COLUMN auto_recharge_trigger bigint
            CHECK (auto_recharge_trigger IS NULL OR auto_recharge_trigger >= 0);

        CREATE TABLE auto_recharge_settings (
            wallet_id                uuid PRIMARY KEY REFERENCES wallets (id),
            enabled                  boolean NOT NULL,
            threshold                bigint NOT NULL CHECK (threshold >= 0),
            pack_code                text,
            amount_paise             bigint CHECK (amount_paise IS NULL OR amount_paise > 0),
            customer_phone           text NOT NULL,
            customer_email           text,
            max_recharges_per_day    integer CHECK (max_recharges_per_day > 0),
            max_recharges_per_month  integer CHECK (max_recharges_per_month > 0),
            max_paise_per_day        bigint CHECK (max_paise_per_day > 0),
            max_paise_per_month      bigint CHECK (max_paise_per_month > 0),
            max_consecutive_failures integer NOT NULL DEFAULT 3
                CHECK (max_consecutive_failures BETWEEN 1 AND 20),
            mandate_id               uuid,
            consecutive_failures     integer NOT NULL DEFAULT 0
                CHECK (consecutive_failures >= 0),
            backoff_until            timestamptz,
            burn_credits_per_hour    bigint NOT NULL DEFAULT 0
                CHECK (burn_credits_per_hour >= 0),
            predicted_level          bigint NOT NULL DEFAULT 0 CHECK (predicted_level >= 0),
            predicted_at             timestamptz,
            created_at               timestamptz NOT NULL DEFAULT now(),
            updated_at               timestamptz NOT NULL DEFAULT now(),
            CHECK ((pack_code IS NULL) <> (amount_paise IS NULL))
        );

        CREATE TABLE auto_recharges (
            id                 uuid PRIMARY KEY,
            wallet_id          uuid NOT NULL REFERENCES wallets (id),
            status             text NOT NULL CHECK (status IN
                ('requested', 'opening', 'pending', 'succeeded', 'failed', 'skipped')),
            trigger_level      bigint NOT NULL,
            available_credits  bigint NOT NULL,
            payment_id         uuid,
            amount_paise       bigint,
            credits            bigint,
            order_request      jsonb,
            left_below         boolean,
            reason             text,
            created_at         timestamptz NOT NULL DEFAULT now(),
            opened_at          timestamptz,
            settled_at         timestamptz,
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        -- Never two in flight for one wallet (the crossing inserts ON CONFLICT DO NOTHING).
        CREATE UNIQUE INDEX auto_recharges_one_in_flight ON auto_recharges (wallet_id)
            WHERE status IN ('requested', 'opening', 'pending');
        CREATE UNIQUE INDEX auto_recharges_payment ON auto_recharges (payment_id)
            WHERE payment_id IS NOT NULL;
        CREATE INDEX auto_recharges_wallet_opened ON auto_recharges (wallet_id, opened_at)
            WHERE opened_at IS NOT NULL;
        CREATE INDEX auto_recharges_pending ON auto_recharges (opened_at)
            WHERE status = 'pending';

        CREATE TABLE auto_recharge_events (
            id           bigserial PRIMARY KEY,
            wallet_id    uuid NOT NULL REFERENCES wallets (id),
            recharge_id  uuid REFERENCES auto_recharges (id),
            decision     text NOT NULL,
            reason       text,
            data         jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX auto_recharge_events_wallet ON auto_recharge_events (wallet_id, id DESC);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE auto_recharge_events;
        DROP TABLE auto_recharges;
        DROP TABLE auto_recharge_settings;
        ALTER TABLE wallets DROP COLUMN auto_recharge_trigger;
        """
    )
