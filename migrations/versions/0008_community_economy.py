"""The community economy (DESIGN §10): spends in a community with the platform's fee, fee
plans, reversals.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- `community_fee_plans`: versioned fee rates per community. A spend records the version it
  used (0: the configured default, no row); a new version never rewrites a spend.
- `community_spends`: one row per spend, written in the same transaction as its journal and
  the member's statement line, with the fee receipt's figures (gross, basis, fee, net, in
  credits and paise).
- `community_spend_reversals`: at most one per spend (its primary key), with its journal.
- Statement lines and lots learn the new kinds: `community_spend` (credits out of the
  wallet), `community_spend_reversal` (credits back, as a new lot of source
  `spend_reversal` that keeps the basis the spend took).
- A house CREDITS account for the platform's fee credits. Each community's own accounts
  (earnings in credits, payable in paise) are opened when it first earns.
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_FEE_CREDITS = uuid.uuid5(_HOUSE_NS, "credits:platform_fee")

_TXN_TYPES = (
    "'purchase', 'bonus', 'promotional', 'refund_reversal', 'debit', 'hold', 'capture', "
    "'release', 'refund', 'expiry', 'community_spend', 'community_spend_reversal'"
)
_LOT_SOURCES = "'purchase', 'bonus', 'promotional', 'refund_reversal', 'spend_reversal'"


def upgrade() -> None:
    execute_script(
        f"""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES ('{_FEE_CREDITS}', 'credits:platform_fee', 'CREDITS', 'platform_fee', 'credit',
                true, 'Credits the platform kept as its fee on community spends');

        ALTER TABLE wallet_transactions
            DROP CONSTRAINT wallet_transactions_transaction_type_check,
            ADD CONSTRAINT wallet_transactions_transaction_type_check
                CHECK (transaction_type IN ({_TXN_TYPES}));
        ALTER TABLE credit_lots
            DROP CONSTRAINT credit_lots_source_check,
            ADD CONSTRAINT credit_lots_source_check CHECK (source IN ({_LOT_SOURCES}));

        CREATE TABLE community_fee_plans (
            community_id text NOT NULL CHECK (community_id ~ '^[A-Za-z0-9_-]{{1,64}}$'),
            version      integer NOT NULL CHECK (version >= 1),
            fee_bps      integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 5000),
            reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            created_by   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (community_id, version)
        );

        CREATE TABLE community_spends (
            id                uuid PRIMARY KEY,
            community_id      text NOT NULL CHECK (community_id ~ '^[A-Za-z0-9_-]{{1,64}}$'),
            wallet_id         uuid NOT NULL REFERENCES wallets (id),
            user_external_id  text NOT NULL,
            credits           bigint NOT NULL CHECK (credits > 0),
            fee_credits       bigint NOT NULL CHECK (fee_credits >= 0),
            community_credits bigint NOT NULL CHECK (community_credits >= 0),
            basis_paise       bigint NOT NULL CHECK (basis_paise >= 0),
            fee_paise         bigint NOT NULL CHECK (fee_paise >= 0),
            community_paise   bigint NOT NULL CHECK (community_paise >= 0),
            fee_bps           integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 5000),
            fee_plan_version  integer NOT NULL CHECK (fee_plan_version >= 0),
            reason            text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            reference         text CHECK (length(reference) <= 200),
            idempotency_key   text NOT NULL UNIQUE,
            journal_id        uuid NOT NULL REFERENCES ledger_journals (id),
            transaction_id    uuid NOT NULL REFERENCES wallet_transactions (id),
            created_by        text NOT NULL,
            created_at        timestamptz NOT NULL,
            -- The fee receipt adds up, in credits and in paise.
            CHECK (fee_credits + community_credits = credits),
            CHECK (fee_paise + community_paise = basis_paise)
        );
        -- A community's spends, newest first (its list and its earnings).
        CREATE INDEX community_spends_community ON community_spends
            (community_id, created_at DESC, id DESC);
        CREATE INDEX community_spends_wallet ON community_spends (wallet_id);

        CREATE TABLE community_spend_reversals (
            spend_id     uuid PRIMARY KEY REFERENCES community_spends (id),
            journal_id   uuid NOT NULL REFERENCES ledger_journals (id),
            transaction_id uuid NOT NULL REFERENCES wallet_transactions (id),
            lot_id       uuid NOT NULL REFERENCES credit_lots (id),
            reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            created_by   text NOT NULL,
            created_at   timestamptz NOT NULL
        );

        -- Spends and reversals are the record of what a community earned: never changed.
        CREATE TRIGGER community_spends_append_only BEFORE UPDATE OR DELETE ON community_spends
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER community_spend_reversals_append_only
            BEFORE UPDATE OR DELETE ON community_spend_reversals
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER community_fee_plans_append_only
            BEFORE UPDATE OR DELETE ON community_fee_plans
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("community spends are in the ledger: restore a backup instead")
