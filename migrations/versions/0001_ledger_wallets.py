"""Foundation: users, wallets, double-entry ledger, credit lots, holds, idempotency, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Money is integer paise (INR ledger) or integer credits (CREDITS ledger). The database itself
enforces what must never break: balanced journals, append-only entries and statement lines,
non-negative wallet balances, unique idempotency keys.
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# House accounts get deterministic ids (uuid5 of their code) so code can name them without a
# lookup. The namespace is frozen here; the application computes the same ids.
_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")
_HOUSE_ACCOUNTS = [
    # code, ledger, kind, normal side, name
    (
        "credits:issuance:purchase",
        "CREDITS",
        "credits_issuance",
        "debit",
        "Credits issued against purchases",
    ),
    (
        "credits:issuance:bonus",
        "CREDITS",
        "credits_issuance",
        "debit",
        "Bonus credits issued with packs",
    ),
    (
        "credits:issuance:promotional",
        "CREDITS",
        "credits_issuance",
        "debit",
        "Promotional credits issued",
    ),
    (
        "credits:issuance:refund_reversal",
        "CREDITS",
        "credits_issuance",
        "debit",
        "Credits re-issued when a refund is reversed",
    ),
    (
        "credits:consumed:platform",
        "CREDITS",
        "credits_consumed",
        "credit",
        "Credits spent on the platform",
    ),
    ("credits:expired", "CREDITS", "credits_expired", "credit", "Credits forfeited on expiry"),
    (
        "inr:gateway_clearing",
        "INR",
        "gateway_clearing",
        "debit",
        "Money collected by the gateway, not yet settled to us",
    ),
    (
        "inr:deferred_revenue",
        "INR",
        "deferred_revenue",
        "credit",
        "Taxable value of credits sold and not yet consumed",
    ),
    ("inr:gst_payable", "INR", "gst_payable", "credit", "GST collected, payable"),
    ("inr:refunds_payable", "INR", "refunds_payable", "credit", "Refunds owed to buyers"),
    (
        "inr:platform_revenue",
        "INR",
        "platform_revenue",
        "credit",
        "Revenue recognised on consumption",
    ),
]

_APPEND_ONLY = [
    "ledger_journals",
    "ledger_entries",
    "ledger_seals",
    "wallet_transactions",
    "audit_logs",
    "ledger_accounts",
    "credit_lot_movements",
]


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE users (
            id          uuid PRIMARY KEY,
            external_id text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
            email       text,
            name        text,
            state_code  text CHECK (state_code ~ '^[0-9]{2}$'),
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE ledger_accounts (
            id             uuid PRIMARY KEY,
            code           text NOT NULL UNIQUE,
            ledger         text NOT NULL CHECK (ledger IN ('INR', 'CREDITS')),
            kind           text NOT NULL,
            normal_side    text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
            allow_negative boolean NOT NULL,
            wallet_id      uuid,
            name           text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ledger_accounts_wallet ON ledger_accounts (wallet_id)
            WHERE wallet_id IS NOT NULL;

        CREATE TABLE wallets (
            id                         uuid PRIMARY KEY,
            owner_type                 text NOT NULL CHECK (owner_type IN ('user', 'community')),
            owner_id                   uuid NOT NULL,
            available_credits          bigint NOT NULL DEFAULT 0 CHECK (available_credits >= 0),
            locked_credits             bigint NOT NULL DEFAULT 0 CHECK (locked_credits >= 0),
            pending_credits            bigint NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
            lifetime_purchased_credits bigint NOT NULL DEFAULT 0
                CHECK (lifetime_purchased_credits >= 0),
            auto_recharge_enabled      boolean NOT NULL DEFAULT false,
            auto_recharge_threshold    integer NOT NULL DEFAULT 200
                CHECK (auto_recharge_threshold >= 0),
            available_account_id       uuid NOT NULL UNIQUE REFERENCES ledger_accounts (id)
                DEFERRABLE INITIALLY DEFERRED,
            held_account_id            uuid NOT NULL UNIQUE REFERENCES ledger_accounts (id)
                DEFERRABLE INITIALLY DEFERRED,
            -- Head of this wallet's hash chain over its ledger entries (DESIGN §4): updated
            -- under the wallet's row lock, which every posting to the wallet takes anyway.
            chain_seq                  bigint NOT NULL DEFAULT 0,
            chain_head                 bytea,
            statement_seq              bigint NOT NULL DEFAULT 0,
            created_at                 timestamptz NOT NULL DEFAULT now(),
            updated_at                 timestamptz NOT NULL DEFAULT now(),
            UNIQUE (owner_type, owner_id),
            CHECK ((chain_seq = 0) = (chain_head IS NULL))
        );
        ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_wallet_fk
            FOREIGN KEY (wallet_id) REFERENCES wallets (id) DEFERRABLE INITIALLY DEFERRED;

        CREATE TABLE ledger_journals (
            id              uuid PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) <= 400),
            kind            text NOT NULL,
            description     text,
            metadata        jsonb NOT NULL DEFAULT '{}',
            created_at      timestamptz NOT NULL
        );

        -- No foreign key to ledger_accounts on purpose: a foreign-key check takes a KEY SHARE
        -- row lock on the referenced row, and house accounts are in every journal (DESIGN §4,
        -- "hot accounts"). The statement trigger below checks accounts with a plain read.
        CREATE TABLE ledger_entries (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            journal_id  uuid NOT NULL REFERENCES ledger_journals (id),
            account_id  uuid NOT NULL,
            ledger      text NOT NULL CHECK (ledger IN ('INR', 'CREDITS')),
            -- Signed: a debit is positive, a credit negative; a journal sums to zero per ledger.
            amount      bigint NOT NULL CHECK (amount <> 0),
            wallet_id   uuid,
            chain_seq   bigint,
            prev_hash   bytea,
            entry_hash  bytea,
            created_at  timestamptz NOT NULL,
            CHECK ((wallet_id IS NULL) = (chain_seq IS NULL)
                   AND (wallet_id IS NULL) = (entry_hash IS NULL)
                   AND (prev_hash IS NULL OR wallet_id IS NOT NULL))
        );
        CREATE UNIQUE INDEX ledger_entries_chain ON ledger_entries (wallet_id, chain_seq)
            WHERE wallet_id IS NOT NULL;
        CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id);
        CREATE INDEX ledger_entries_journal ON ledger_entries (journal_id);

        CREATE TABLE ledger_seals (
            block_no       bigint PRIMARY KEY CHECK (block_no >= 1),
            first_entry_id bigint NOT NULL,
            last_entry_id  bigint NOT NULL,
            entry_count    integer NOT NULL CHECK (entry_count >= 1),
            entries_digest bytea NOT NULL,
            prev_seal_hash bytea,
            seal_hash      bytea NOT NULL,
            sealed_at      timestamptz NOT NULL DEFAULT now(),
            CHECK (last_entry_id >= first_entry_id),
            CHECK ((block_no = 1) = (prev_seal_hash IS NULL))
        );

        CREATE TABLE credit_lots (
            id                uuid PRIMARY KEY,
            wallet_id         uuid NOT NULL REFERENCES wallets (id),
            source            text NOT NULL
                CHECK (source IN ('purchase', 'bonus', 'promotional', 'refund_reversal')),
            credits_granted   bigint NOT NULL CHECK (credits_granted > 0),
            credits_remaining bigint NOT NULL CHECK (credits_remaining >= 0),
            credits_refunded  bigint NOT NULL DEFAULT 0 CHECK (credits_refunded >= 0),
            paid_paise        bigint NOT NULL DEFAULT 0 CHECK (paid_paise >= 0),
            taxable_paise     bigint NOT NULL DEFAULT 0
                CHECK (taxable_paise >= 0 AND taxable_paise <= paid_paise),
            source_ref        text,
            journal_id        uuid NOT NULL REFERENCES ledger_journals (id),
            granted_at        timestamptz NOT NULL,
            expires_at        timestamptz,
            updated_at        timestamptz NOT NULL DEFAULT now(),
            CHECK (credits_remaining + credits_refunded <= credits_granted),
            -- Promotional credits have no cost basis and are never refundable (DESIGN §3).
            CHECK (source <> 'promotional' OR (paid_paise = 0 AND credits_refunded = 0))
        );
        -- FIFO draw order (DESIGN §3): soonest expiry first, then oldest grant.
        CREATE INDEX credit_lots_fifo ON credit_lots
            (wallet_id, expires_at ASC NULLS LAST, granted_at, id) WHERE credits_remaining > 0;

        CREATE TABLE wallet_holds (
            id               uuid PRIMARY KEY,
            wallet_id        uuid NOT NULL REFERENCES wallets (id),
            credits          bigint NOT NULL CHECK (credits > 0),
            captured_credits bigint NOT NULL DEFAULT 0 CHECK (captured_credits >= 0),
            released_credits bigint NOT NULL DEFAULT 0 CHECK (released_credits >= 0),
            status           text NOT NULL
                CHECK (status IN ('active', 'captured', 'released', 'expired')),
            reason           text NOT NULL,
            -- Who placed the hold (a JWT subject); null when placed by an internal caller.
            -- Only its creator or a debit-scoped service may settle it.
            created_by       text,
            idempotency_key  text NOT NULL UNIQUE,
            expires_at       timestamptz NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT now(),
            closed_at        timestamptz,
            CHECK (captured_credits + released_credits
                   = CASE WHEN status = 'active' THEN 0 ELSE credits END),
            CHECK ((status = 'active') = (closed_at IS NULL))
        );
        CREATE INDEX wallet_holds_expiry ON wallet_holds (expires_at) WHERE status = 'active';
        CREATE INDEX wallet_holds_wallet ON wallet_holds (wallet_id, created_at);

        -- The user-facing statement (the seed's CreditTransaction). Balances are the wallet's
        -- available credits before and after the line.
        CREATE TABLE wallet_transactions (
            id               uuid PRIMARY KEY,
            wallet_id        uuid NOT NULL REFERENCES wallets (id),
            seq              bigint NOT NULL CHECK (seq >= 1),
            transaction_type text NOT NULL CHECK (transaction_type IN (
                'purchase', 'bonus', 'promotional', 'refund_reversal', 'debit', 'hold',
                'capture', 'release', 'refund', 'expiry')),
            credits          bigint NOT NULL CHECK (credits >= 0),
            balance_before   bigint NOT NULL CHECK (balance_before >= 0),
            balance_after    bigint NOT NULL CHECK (balance_after >= 0),
            source           text NOT NULL,
            source_id        text,
            metadata         jsonb NOT NULL DEFAULT '{}',
            idempotency_key  text NOT NULL UNIQUE CHECK (length(idempotency_key) <= 400),
            journal_id       uuid NOT NULL REFERENCES ledger_journals (id),
            hold_id          uuid REFERENCES wallet_holds (id),
            lot_id           uuid REFERENCES credit_lots (id),
            created_at       timestamptz NOT NULL,
            UNIQUE (wallet_id, seq)
        );
        CREATE INDEX wallet_transactions_created ON wallet_transactions (created_at);

        -- Which lots each statement line drew from (FIFO consumption, refunds): the basis for
        -- revenue recognition and for how much of a purchase is still refundable.
        CREATE TABLE credit_lot_movements (
            id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            lot_id                uuid NOT NULL REFERENCES credit_lots (id),
            wallet_transaction_id uuid NOT NULL REFERENCES wallet_transactions (id),
            credits               bigint NOT NULL CHECK (credits <> 0),
            created_at            timestamptz NOT NULL
        );
        CREATE INDEX credit_lot_movements_lot ON credit_lot_movements (lot_id);
        CREATE INDEX credit_lot_movements_txn ON credit_lot_movements (wallet_transaction_id);

        -- HTTP Idempotency-Key records. A row is written in the same transaction as the
        -- effect it answers for, so it only ever exists for a finished request.
        CREATE TABLE idempotency_keys (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            scope           text NOT NULL,
            key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
            request_hash    text NOT NULL,
            method          text NOT NULL,
            path            text NOT NULL,
            response_status integer NOT NULL,
            -- json, not jsonb: a replay must return the first answer byte for byte, and
            -- jsonb would reorder its keys.
            response_body   json NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            UNIQUE (scope, key)
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

        CREATE TABLE audit_logs (
            id          uuid PRIMARY KEY,
            actor_sub   text NOT NULL,
            actor_role  text NOT NULL,
            action      text NOT NULL,
            target_type text NOT NULL,
            target_id   text NOT NULL,
            request_id  text,
            details     jsonb NOT NULL DEFAULT '{}',
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX audit_logs_target ON audit_logs (target_type, target_id, created_at);
        CREATE INDEX audit_logs_actor ON audit_logs (actor_sub, created_at);
        """
    )

    # Append-only tables: the database refuses UPDATE, DELETE and TRUNCATE whoever asks.
    execute_script(
        """
        CREATE FUNCTION billing_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        """
    )
    for table in _APPEND_ONLY:
        execute_script(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            """
        )

    # A lot's identity and cost basis never change once granted; only how much of it is
    # left and how much was refunded move (and those are checked against lot movements).
    execute_script(
        """
        CREATE FUNCTION credit_lots_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (NEW.id, NEW.wallet_id, NEW.source, NEW.credits_granted, NEW.paid_paise,
                NEW.taxable_paise, NEW.source_ref, NEW.journal_id, NEW.granted_at,
                NEW.expires_at)
               IS DISTINCT FROM
               (OLD.id, OLD.wallet_id, OLD.source, OLD.credits_granted, OLD.paid_paise,
                OLD.taxable_paise, OLD.source_ref, OLD.journal_id, OLD.granted_at,
                OLD.expires_at) THEN
                RAISE EXCEPTION 'credit lot % may only change its remaining and refunded '
                    'credits', OLD.id USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER credit_lots_fixed BEFORE UPDATE ON credit_lots
            FOR EACH ROW EXECUTE FUNCTION credit_lots_fixed();
        CREATE TRIGGER credit_lots_no_delete BEFORE DELETE ON credit_lots
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER credit_lots_no_truncate BEFORE TRUNCATE ON credit_lots
            FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
        """
    )

    # Balanced journals, checked once per INSERT statement over every journal it touched.
    # Summing all of a journal's legs (not only the new rows) means a leg added later by
    # another statement can never unbalance a journal that was balanced.
    execute_script(
        """
        CREATE FUNCTION ledger_entries_check() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            bad record;
        BEGIN
            SELECT n.id, n.account_id, n.ledger INTO bad
              FROM new_rows n LEFT JOIN ledger_accounts a ON a.id = n.account_id
             WHERE a.id IS NULL OR a.ledger <> n.ledger
                OR a.wallet_id IS DISTINCT FROM n.wallet_id
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger entry for account % on ledger % names no such account, '
                    'the wrong ledger or the wrong wallet', bad.account_id, bad.ledger
                    USING ERRCODE = 'foreign_key_violation';
            END IF;

            SELECT e.journal_id, e.ledger, sum(e.amount) AS total INTO bad
              FROM ledger_entries e
             WHERE e.journal_id IN (SELECT DISTINCT journal_id FROM new_rows)
             GROUP BY e.journal_id, e.ledger
            HAVING sum(e.amount) <> 0
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'journal % does not balance on ledger % (off by %)',
                    bad.journal_id, bad.ledger, bad.total
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;

        CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_check();
        """
    )

    for code, ledger, kind, side, name in _HOUSE_ACCOUNTS:
        account_id = uuid.uuid5(_HOUSE_NS, code)
        execute_script(
            f"""
            INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
            VALUES ('{account_id}', '{code}', '{ledger}', '{kind}', '{side}', true, '{name}')
            """
        )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE audit_logs, idempotency_keys, credit_lot_movements, wallet_transactions,
            wallet_holds, credit_lots, ledger_seals, ledger_entries, ledger_journals, wallets,
            ledger_accounts, users CASCADE;
        DROP FUNCTION ledger_entries_check();
        DROP FUNCTION credit_lots_fixed();
        DROP FUNCTION billing_refuse_change();
        """
    )
