"""Payments: packs catalog, payments, attempts, raw webhooks, fraud events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A payment row is the order we open at Cashfree for one purchase. Its status only moves along
the state machine in `modules/payments/state.py` (conditional updates); every move is kept in
`payment_transitions`. Webhooks are stored raw, byte for byte, before anything acts on them.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATUSES = (
    "'CREATED', 'ACTIVE', 'FAILED', 'USER_DROPPED', 'PAID', 'CREDITED', 'EXPIRED', "
    "'CANCELLED', 'REVIEW'"
)


def upgrade() -> None:
    execute_script(
        f"""
        -- Versioned: a payment records the (code, version) it was sold at, so changing a
        -- price publishes a new version and never rewrites what was sold.
        CREATE TABLE credit_packs (
            code          text NOT NULL CHECK (code ~ '^[a-z0-9_]{{1,40}}$'),
            version       integer NOT NULL CHECK (version >= 1),
            name          text NOT NULL,
            price_paise   bigint NOT NULL CHECK (price_paise > 0),
            base_credits  bigint NOT NULL CHECK (base_credits > 0),
            bonus_credits bigint NOT NULL CHECK (bonus_credits >= 0),
            sort_order    integer NOT NULL DEFAULT 0,
            active        boolean NOT NULL DEFAULT true,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (code, version)
        );
        CREATE UNIQUE INDEX credit_packs_one_active ON credit_packs (code) WHERE active;
        INSERT INTO credit_packs (code, version, name, price_paise, base_credits, bonus_credits,
                                  sort_order)
        VALUES ('pack_150', 1, 'Starter', 15000, 1500, 0, 1),
               ('pack_300', 1, 'Plus', 30000, 3000, 200, 2),
               ('pack_500', 1, 'Pro', 50000, 5000, 500, 3),
               ('pack_1000', 1, 'Max', 100000, 10000, 2000, 4);

        CREATE TABLE payments (
            id                   uuid PRIMARY KEY,
            user_id              uuid NOT NULL REFERENCES users (id),
            wallet_id            uuid NOT NULL REFERENCES wallets (id),
            -- Our order id at Cashfree (3-45 chars of [A-Za-z0-9_-]); unique there too, which
            -- is what makes re-sending a create-order call safe.
            order_id             text NOT NULL UNIQUE CHECK (order_id ~ '^[A-Za-z0-9_-]{{3,45}}$'),
            idempotency_key      text NOT NULL UNIQUE,
            request_hash         text NOT NULL,
            payment_session_id   text,
            cashfree_order_id    text,
            cashfree_payment_id  text,
            kind                 text NOT NULL CHECK (kind IN ('pack', 'custom')),
            pack_code            text,
            pack_version         integer,
            amount_paise         bigint NOT NULL CHECK (amount_paise > 0),
            taxable_paise        bigint NOT NULL CHECK (taxable_paise >= 0),
            gst_amount_paise     bigint NOT NULL CHECK (gst_amount_paise >= 0),
            cgst_paise           bigint NOT NULL CHECK (cgst_paise >= 0),
            sgst_paise           bigint NOT NULL CHECK (sgst_paise >= 0),
            igst_paise           bigint NOT NULL CHECK (igst_paise >= 0),
            gst_mode             text NOT NULL CHECK (gst_mode IN ('inclusive', 'exclusive')),
            gst_rate_bp          integer NOT NULL CHECK (gst_rate_bp BETWEEN 0 AND 10000),
            buyer_state          text NOT NULL CHECK (buyer_state ~ '^[0-9]{{2}}$'),
            seller_state         text NOT NULL CHECK (seller_state ~ '^[0-9]{{2}}$'),
            base_credits         bigint NOT NULL CHECK (base_credits > 0),
            bonus_credits        bigint NOT NULL CHECK (bonus_credits >= 0),
            credits_granted      bigint NOT NULL DEFAULT 0 CHECK (credits_granted >= 0),
            platform_fee_paise   bigint NOT NULL DEFAULT 0 CHECK (platform_fee_paise >= 0),
            currency             text NOT NULL DEFAULT 'INR' CHECK (currency = 'INR'),
            status               text NOT NULL CHECK (status IN ({STATUSES})),
            payment_method       text,
            payment_group        text,
            customer_phone       text,
            customer_email       text,
            metadata             jsonb NOT NULL DEFAULT '{{}}',
            webhook_verified     boolean NOT NULL DEFAULT false,
            refunded             boolean NOT NULL DEFAULT false,
            refund_amount_paise  bigint CHECK (refund_amount_paise >= 0),
            fraud_score          real,
            retry_count          integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
            retry_of             uuid REFERENCES payments (id),
            order_expires_at     timestamptz NOT NULL,
            -- The first answer to POST /v1/payments/orders, replayed byte for byte.
            create_response      json,
            failure_code         text,
            failure_reason       text,
            paid_at              timestamptz,
            credited_at          timestamptz,
            last_synced_at       timestamptz,
            sync_count           integer NOT NULL DEFAULT 0,
            created_at           timestamptz NOT NULL DEFAULT now(),
            updated_at           timestamptz NOT NULL DEFAULT now(),
            CHECK (taxable_paise + gst_amount_paise = amount_paise),
            CHECK (cgst_paise + sgst_paise + igst_paise = gst_amount_paise),
            CHECK (cgst_paise = 0 OR igst_paise = 0),
            CHECK ((kind = 'pack') = (pack_code IS NOT NULL AND pack_version IS NOT NULL)),
            CHECK (credits_granted IN (0, base_credits + bonus_credits)),
            CHECK ((status = 'CREDITED') = (credited_at IS NOT NULL)),
            CHECK (status <> 'CREDITED' OR credits_granted = base_credits + bonus_credits),
            FOREIGN KEY (pack_code, pack_version) REFERENCES credit_packs (code, version)
        );
        CREATE INDEX payments_user_recent ON payments (user_id, created_at DESC, id DESC);
        CREATE INDEX payments_status ON payments (status, created_at);
        -- The sync job's scan: orders that may still change at Cashfree (closed ones are
        -- looked at again for a day after their expiry).
        CREATE INDEX payments_open ON payments (updated_at)
            WHERE status IN ('CREATED', 'ACTIVE', 'FAILED', 'USER_DROPPED', 'PAID', 'EXPIRED',
                             'CANCELLED');

        CREATE TABLE payment_transitions (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            payment_id  uuid NOT NULL REFERENCES payments (id),
            from_status text NOT NULL,
            to_status   text NOT NULL,
            reason      text NOT NULL,
            at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payment_transitions_payment ON payment_transitions (payment_id, id);

        CREATE TABLE payment_attempts (
            id                 uuid PRIMARY KEY,
            payment_id         uuid NOT NULL REFERENCES payments (id),
            cf_payment_id      text NOT NULL UNIQUE,
            status             text NOT NULL,
            amount_paise       bigint,
            currency           text,
            payment_method     text,
            payment_group      text,
            bank_reference     text,
            payment_message    text,
            error_code         text,
            error_description  text,
            error_reason       text,
            attempted_at       timestamptz,
            completed_at       timestamptz,
            raw                jsonb NOT NULL,
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id, created_at);

        CREATE TABLE payment_webhooks (
            id                  uuid PRIMARY KEY,
            -- Cashfree's x-idempotency-key when sent, else cf_payment_id (or refund id) + type.
            dedupe_key          text NOT NULL UNIQUE,
            provider_key        text,
            event_type          text NOT NULL,
            order_id            text,
            cf_payment_id       text,
            payment_id          uuid REFERENCES payments (id),
            raw_body            bytea NOT NULL,
            headers             jsonb NOT NULL,
            signature_timestamp text NOT NULL,
            delivery_attempt    integer,
            source_ip           text,
            status              text NOT NULL
                CHECK (status IN ('received', 'processed', 'ignored', 'rejected')),
            outcome             text,
            duplicates          integer NOT NULL DEFAULT 0,
            received_at         timestamptz NOT NULL DEFAULT now(),
            last_seen_at        timestamptz NOT NULL DEFAULT now(),
            processed_at        timestamptz
        );
        CREATE INDEX payment_webhooks_order ON payment_webhooks (order_id, received_at);

        CREATE TABLE fraud_events (
            id          uuid PRIMARY KEY,
            kind        text NOT NULL,
            severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
            payment_id  uuid REFERENCES payments (id),
            user_id     uuid REFERENCES users (id),
            webhook_id  uuid REFERENCES payment_webhooks (id),
            details     jsonb NOT NULL DEFAULT '{{}}',
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX fraud_events_payment ON fraud_events (payment_id) WHERE payment_id IS NOT NULL;
        CREATE INDEX fraud_events_recent ON fraud_events (created_at);
        """
    )
    for table in ("payment_transitions", "fraud_events"):
        execute_script(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            """
        )
    # A stored webhook's bytes are evidence: only its processing columns may change.
    execute_script(
        """
        CREATE FUNCTION payment_webhooks_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.raw_body IS DISTINCT FROM OLD.raw_body
               OR NEW.headers IS DISTINCT FROM OLD.headers
               OR NEW.dedupe_key IS DISTINCT FROM OLD.dedupe_key
               OR NEW.signature_timestamp IS DISTINCT FROM OLD.signature_timestamp
               OR NEW.received_at IS DISTINCT FROM OLD.received_at THEN
                RAISE EXCEPTION 'payment_webhooks: a stored webhook cannot be rewritten'
                    USING ERRCODE = 'P0001';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER payment_webhooks_fixed BEFORE UPDATE ON payment_webhooks
            FOR EACH ROW EXECUTE FUNCTION payment_webhooks_fixed();
        CREATE TRIGGER payment_webhooks_no_delete BEFORE DELETE ON payment_webhooks
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE fraud_events;
        DROP TABLE payment_webhooks;
        DROP FUNCTION payment_webhooks_fixed();
        DROP TABLE payment_attempts;
        DROP TABLE payment_transitions;
        DROP TABLE payments;
        DROP TABLE credit_packs;
        """
    )
