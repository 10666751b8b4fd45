"""Mandates (UPI AutoPay / card standing instructions, Cashfree Subscriptions, DESIGN §12,
cashfree.md §12) and the charges raised on them as payments.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

- `mandates`: one per mandate a member set up; its Cashfree `subscription_id` derived from
  our id (a retried create names the same subscription), the maximum per debit, the status
  we last read from Cashfree's API (never from a webhook's word), the authorisation
  reference (UMN / enrolment id) masked, and when Cashfree was last asked.
- `subscription_webhooks`: every signed Subscriptions delivery, raw, once per signed
  identity (type, subscription, payment, status), with its repeats and outcome.
- `payments` learns its channel: `order` (a PG order, as always) or `mandate` (a charge
  raised on a mandate: the Cashfree subscription id, the schedule date asked for, and when
  Cashfree's pre-debit notification was seen).
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE mandates (
            id                  uuid PRIMARY KEY,
            user_id             uuid NOT NULL REFERENCES users (id),
            idempotency_key     text NOT NULL UNIQUE,
            request_hash        text NOT NULL,
            subscription_id     text NOT NULL UNIQUE,
            cf_subscription_id  text,
            session_id          text,
            max_amount_paise    bigint NOT NULL CHECK (max_amount_paise > 0),
            customer_phone      text NOT NULL,
            valid_until         timestamptz,
            -- pending | active | paused | revoked | failed | expired | completed
            status              text NOT NULL,
            cashfree_status     text,
            auth_status         text,
            auth_reference      text,
            payment_method      text,
            revoked_by          text,
            refreshed_at        timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX mandates_user ON mandates (user_id, created_at DESC);
        CREATE INDEX mandates_open ON mandates (refreshed_at)
            WHERE status IN ('pending', 'active', 'paused');

        CREATE TABLE subscription_webhooks (
            id               uuid PRIMARY KEY,
            dedupe_key       text NOT NULL UNIQUE,
            event_type       text NOT NULL,
            subscription_id  text,
            payment_id       text,
            status           text,
            raw_body         bytea NOT NULL,
            headers          jsonb NOT NULL,
            outcome          text NOT NULL,
            repeats          integer NOT NULL DEFAULT 0,
            received_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX subscription_webhooks_subscription
            ON subscription_webhooks (subscription_id);

        ALTER TABLE payments
            ADD COLUMN channel text NOT NULL DEFAULT 'order'
                CHECK (channel IN ('order', 'mandate')),
            ADD COLUMN subscription_id text,
            ADD COLUMN schedule_date date,
            ADD COLUMN pdn_at timestamptz,
            ADD CONSTRAINT payments_mandate_has_subscription
                CHECK (channel = 'order' OR subscription_id IS NOT NULL);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE payments DROP CONSTRAINT payments_mandate_has_subscription,
            DROP COLUMN pdn_at, DROP COLUMN schedule_date, DROP COLUMN subscription_id,
            DROP COLUMN channel;
        DROP TABLE subscription_webhooks;
        DROP TABLE mandates;
        """
    )
