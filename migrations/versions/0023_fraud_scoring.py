"""Fraud scoring (DESIGN §13): assessments, allow/deny lists, the review queue.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07

- `fraud_assessments`: one row per scoring (before an order opens, and again once paid):
  who, from where (IP, device, the paying instrument), the score, the action and the rules
  that fired. It is also the SQL side of the velocity windows: while Redis is away the same
  counts are read here, so the decision does not change with the outage.
- `fraud_lists`: allow and deny entries by user id, device, IP or UPI VPA.
- `fraud_reviews`: a payment whose score asked for a human, and what they decided. Its
  credits wait in a wallet hold of purpose `review` (earmarking the purchase's lots, like a
  refund's hold) until released or refunded.
- Indexes for the per-buyer reads the rules make (billing facts, fraud events, spends).
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE fraud_assessments (
            id           uuid PRIMARY KEY,
            stage        text NOT NULL CHECK (stage IN ('order', 'paid')),
            user_id      uuid NOT NULL REFERENCES users (id),
            payment_id   uuid REFERENCES payments (id),
            ip           text CHECK (length(ip) <= 64),
            device_id    text CHECK (length(device_id) <= 128),
            instrument   text CHECK (length(instrument) <= 200),
            amount_paise bigint NOT NULL CHECK (amount_paise >= 0),
            score        integer NOT NULL CHECK (score BETWEEN 0 AND 100),
            action       text NOT NULL CHECK (action IN ('allow', 'review', 'block')),
            rules        text[] NOT NULL DEFAULT '{}',
            listed       text CHECK (listed IN ('allow', 'deny')),
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX fraud_assessments_user ON fraud_assessments (user_id, created_at DESC);
        CREATE INDEX fraud_assessments_ip ON fraud_assessments (ip, created_at)
            WHERE ip IS NOT NULL;
        CREATE INDEX fraud_assessments_device ON fraud_assessments (device_id, created_at)
            WHERE device_id IS NOT NULL;
        CREATE INDEX fraud_assessments_instrument ON fraud_assessments (instrument, created_at)
            WHERE instrument IS NOT NULL;
        -- A payment is scored once per stage (a redelivered message scores nothing twice).
        CREATE UNIQUE INDEX fraud_assessments_once ON fraud_assessments (payment_id, stage)
            WHERE payment_id IS NOT NULL;

        CREATE TABLE fraud_lists (
            id          uuid PRIMARY KEY,
            list        text NOT NULL CHECK (list IN ('allow', 'deny')),
            kind        text NOT NULL CHECK (kind IN ('user', 'device', 'ip', 'vpa')),
            value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 200),
            reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            created_by  text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (kind, value)
        );

        CREATE TABLE fraud_reviews (
            id           uuid PRIMARY KEY,
            payment_id   uuid NOT NULL UNIQUE REFERENCES payments (id),
            user_id      uuid NOT NULL REFERENCES users (id),
            wallet_id    uuid NOT NULL REFERENCES wallets (id),
            stage        text NOT NULL CHECK (stage IN ('order', 'paid')),
            score        integer NOT NULL CHECK (score BETWEEN 0 AND 100),
            rules        text[] NOT NULL,
            status       text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'released', 'refunded')),
            hold_id      uuid REFERENCES wallet_holds (id),
            hold_lots    jsonb,
            decided_by   text,
            decided_role text,
            decided_at   timestamptz,
            created_at   timestamptz NOT NULL DEFAULT now(),
            CHECK ((status = 'pending') = (decided_at IS NULL))
        );
        CREATE INDEX fraud_reviews_queue ON fraud_reviews (created_at DESC, id DESC)
            WHERE status = 'pending';
        CREATE INDEX fraud_reviews_user ON fraud_reviews (user_id, created_at DESC);

        ALTER TABLE wallet_holds DROP CONSTRAINT wallet_holds_purpose_check;
        ALTER TABLE wallet_holds ADD CONSTRAINT wallet_holds_purpose_check
            CHECK (purpose IN ('spend', 'refund', 'review'));

        CREATE INDEX fraud_events_user ON fraud_events (user_id, created_at)
            WHERE user_id IS NOT NULL;
        CREATE INDEX billing_events_user ON billing_events (user_id, event_type, occurred_at)
            WHERE user_id IS NOT NULL;
        CREATE INDEX community_spends_wallet_recent ON community_spends (wallet_id, created_at);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX community_spends_wallet_recent;
        DROP INDEX billing_events_user;
        DROP INDEX fraud_events_user;
        ALTER TABLE wallet_holds DROP CONSTRAINT wallet_holds_purpose_check;
        ALTER TABLE wallet_holds ADD CONSTRAINT wallet_holds_purpose_check
            CHECK (purpose IN ('spend', 'refund'));
        DROP TABLE fraud_reviews;
        DROP TABLE fraud_lists;
        DROP TABLE fraud_assessments;
        """
    )
