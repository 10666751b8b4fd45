"""Refunds, tax documents (invoices and credit notes) and the billing event log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

A refund first holds the credits it takes back, earmarked on the very lots it refunds
(`credit_lots.credits_reserved`), so no spend can draw them while Cashfree works; success
captures the hold and posts the journals, failure releases it. Tax documents are numbered
gap-free per series and Indian financial year by a counter row updated in the transaction
that creates the document: a rolled-back document gives its number back.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

REFUND_STATUSES = "'CREATED', 'PENDING', 'ONHOLD', 'SUCCESS', 'FAILED', 'CANCELLED'"


def upgrade() -> None:
    execute_script(
        """
        -- Credits of a lot set aside for a refund in flight: still the wallet's (held), never
        -- drawn by a spend (FIFO draws credits_remaining - credits_reserved).
        ALTER TABLE credit_lots ADD COLUMN credits_reserved bigint NOT NULL DEFAULT 0;
        ALTER TABLE credit_lots ADD CONSTRAINT credit_lots_reserved_bounds
            CHECK (credits_reserved >= 0 AND credits_reserved <= credits_remaining);

        -- A refund's hold is settled by the refund and by nothing else (no API call, no expiry).
        ALTER TABLE wallet_holds ADD COLUMN purpose text NOT NULL DEFAULT 'spend'
            CHECK (purpose IN ('spend', 'refund'));

        ALTER TABLE payments ADD CONSTRAINT payments_refund_bounds
            CHECK (refund_amount_paise IS NULL OR refund_amount_paise <= amount_paise);
        ALTER TABLE payments ADD CONSTRAINT payments_refunded_flag
            CHECK (NOT refunded OR refund_amount_paise = amount_paise);
        """
    )
    execute_script(
        f"""
        CREATE TABLE refunds (
            id                  uuid PRIMARY KEY,
            -- Our refund id at Cashfree (3-40 chars): Cashfree keeps it unique per order, which
            -- makes re-sending the create call safe.
            refund_ref          text NOT NULL UNIQUE CHECK (refund_ref ~ '^[A-Za-z0-9_-]{{3,40}}$'),
            payment_id          uuid NOT NULL REFERENCES payments (id),
            wallet_id           uuid NOT NULL REFERENCES wallets (id),
            order_id            text NOT NULL,
            idempotency_key     text NOT NULL UNIQUE,
            requested_by        text NOT NULL,
            requested_role      text NOT NULL,
            reason              text NOT NULL CHECK (length(reason) BETWEEN 3 AND 100),
            amount_paise        bigint NOT NULL CHECK (amount_paise > 0),
            taxable_paise       bigint NOT NULL CHECK (taxable_paise >= 0),
            cgst_paise          bigint NOT NULL CHECK (cgst_paise >= 0),
            sgst_paise          bigint NOT NULL CHECK (sgst_paise >= 0),
            igst_paise          bigint NOT NULL CHECK (igst_paise >= 0),
            base_credits        bigint NOT NULL CHECK (base_credits >= 0),
            bonus_credits       bigint NOT NULL CHECK (bonus_credits >= 0),
            purchase_lot_id     uuid NOT NULL REFERENCES credit_lots (id),
            bonus_lot_id        uuid REFERENCES credit_lots (id),
            hold_id             uuid REFERENCES wallet_holds (id),
            status              text NOT NULL CHECK (status IN ({REFUND_STATUSES})),
            cf_refund_id        text,
            refund_arn          text,
            gateway_status      text,
            status_description  text,
            failure_reason      text,
            -- Set when Cashfree's account of the refund cannot be squared with ours: the
            -- credits stay held and the sync stops asking until a person has looked.
            review_reason       text,
            sync_count          integer NOT NULL DEFAULT 0,
            last_synced_at      timestamptz,
            processed_at        timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            CHECK (taxable_paise + cgst_paise + sgst_paise + igst_paise = amount_paise),
            CHECK (cgst_paise = 0 OR igst_paise = 0),
            CHECK (base_credits + bonus_credits > 0),
            CHECK ((bonus_credits > 0) <= (bonus_lot_id IS NOT NULL)),
            CHECK ((status IN ('SUCCESS', 'FAILED', 'CANCELLED')) = (processed_at IS NOT NULL))
        );
        CREATE INDEX refunds_payment ON refunds (payment_id, created_at DESC, id DESC);
        -- The sync job's scan: refunds Cashfree has not finished.
        CREATE INDEX refunds_open ON refunds (updated_at)
            WHERE status IN ('CREATED', 'PENDING', 'ONHOLD');

        CREATE TABLE refund_transitions (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            refund_id   uuid NOT NULL REFERENCES refunds (id),
            from_status text NOT NULL,
            to_status   text NOT NULL,
            reason      text NOT NULL,
            at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX refund_transitions_refund ON refund_transitions (refund_id, id);

        -- The next number of each document series in each financial year ("2026-27").
        CREATE TABLE document_sequences (
            series      text NOT NULL,
            fiscal_year text NOT NULL CHECK (fiscal_year ~ '^[0-9]{{4}}-[0-9]{{2}}$'),
            last_number bigint NOT NULL CHECK (last_number >= 1),
            PRIMARY KEY (series, fiscal_year)
        );

        CREATE TABLE invoices (
            id                  uuid PRIMARY KEY,
            kind                text NOT NULL CHECK (kind IN ('tax_invoice', 'credit_note')),
            series              text NOT NULL,
            fiscal_year         text NOT NULL,
            seq                 bigint NOT NULL CHECK (seq >= 1),
            -- GST rule 46: at most 16 characters of letters, digits, '-' and '/'.
            number              text NOT NULL UNIQUE CHECK (number ~ '^[A-Za-z0-9/-]{{1,16}}$'),
            payment_id          uuid NOT NULL REFERENCES payments (id),
            refund_id           uuid UNIQUE REFERENCES refunds (id),
            original_invoice_id uuid REFERENCES invoices (id),
            user_id             uuid NOT NULL REFERENCES users (id),
            issued_at           timestamptz NOT NULL,
            place_of_supply     text NOT NULL CHECK (place_of_supply ~ '^[0-9]{{2}}$'),
            taxable_paise       bigint NOT NULL CHECK (taxable_paise >= 0),
            cgst_paise          bigint NOT NULL CHECK (cgst_paise >= 0),
            sgst_paise          bigint NOT NULL CHECK (sgst_paise >= 0),
            igst_paise          bigint NOT NULL CHECK (igst_paise >= 0),
            total_paise         bigint NOT NULL CHECK (total_paise > 0),
            -- The document as issued: the PDF is drawn from it, and it never changes.
            document            jsonb NOT NULL,
            pdf_key             text,
            pdf_sha256          text CHECK (pdf_sha256 ~ '^[0-9a-f]{{64}}$'),
            pdf_bytes           integer CHECK (pdf_bytes > 0),
            pdf_stored_at       timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            UNIQUE (series, fiscal_year, seq),
            CHECK (taxable_paise + cgst_paise + sgst_paise + igst_paise = total_paise),
            CHECK (cgst_paise = 0 OR igst_paise = 0),
            CHECK ((kind = 'credit_note') = (refund_id IS NOT NULL)),
            CHECK ((kind = 'credit_note') = (original_invoice_id IS NOT NULL)),
            CHECK ((pdf_key IS NULL) = (pdf_stored_at IS NULL)
                   AND (pdf_key IS NULL) = (pdf_sha256 IS NULL))
        );
        -- One tax invoice per purchase.
        CREATE UNIQUE INDEX invoices_one_per_payment ON invoices (payment_id)
            WHERE kind = 'tax_invoice';
        CREATE INDEX invoices_user_recent ON invoices (user_id, issued_at DESC, id DESC);
        CREATE INDEX invoices_recent ON invoices (issued_at DESC, id DESC);
        CREATE INDEX invoices_pdf_pending ON invoices (created_at) WHERE pdf_key IS NULL;

        -- Billing facts, in the order they happened, for analytics to read. Append-only.
        CREATE TABLE billing_events (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_type  text NOT NULL CHECK (event_type ~ '^[a-z_]+\\.[a-z_]+$'),
            payment_id  uuid REFERENCES payments (id),
            refund_id   uuid REFERENCES refunds (id),
            invoice_id  uuid REFERENCES invoices (id),
            user_id     uuid REFERENCES users (id),
            amount_paise bigint,
            credits     bigint,
            data        jsonb NOT NULL DEFAULT '{{}}',
            occurred_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX billing_events_payment ON billing_events (payment_id)
            WHERE payment_id IS NOT NULL;
        CREATE INDEX billing_events_time ON billing_events (occurred_at);
        """
    )
    for table in ("refund_transitions", "billing_events"):
        execute_script(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            """
        )
    # An issued tax document is a legal record: only where its PDF is kept may be filled in
    # (once), and it is never deleted.
    execute_script(
        """
        CREATE FUNCTION invoices_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (to_jsonb(NEW) - ARRAY['pdf_key', 'pdf_sha256', 'pdf_bytes', 'pdf_stored_at'])
               IS DISTINCT FROM
               (to_jsonb(OLD) - ARRAY['pdf_key', 'pdf_sha256', 'pdf_bytes', 'pdf_stored_at'])
               OR (OLD.pdf_key IS NOT NULL AND (NEW.pdf_key, NEW.pdf_sha256, NEW.pdf_bytes)
                   IS DISTINCT FROM (OLD.pdf_key, OLD.pdf_sha256, OLD.pdf_bytes)) THEN
                RAISE EXCEPTION 'invoice % was issued and cannot be changed', OLD.number
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER invoices_fixed BEFORE UPDATE ON invoices
            FOR EACH ROW EXECUTE FUNCTION invoices_fixed();
        CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
            FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();

        -- A refund's amounts, lots and identity are fixed when it is created.
        CREATE FUNCTION refunds_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (NEW.id, NEW.refund_ref, NEW.payment_id, NEW.wallet_id, NEW.amount_paise,
                NEW.taxable_paise, NEW.cgst_paise, NEW.sgst_paise, NEW.igst_paise,
                NEW.base_credits, NEW.bonus_credits, NEW.purchase_lot_id, NEW.bonus_lot_id,
                NEW.idempotency_key, NEW.created_at)
               IS DISTINCT FROM
               (OLD.id, OLD.refund_ref, OLD.payment_id, OLD.wallet_id, OLD.amount_paise,
                OLD.taxable_paise, OLD.cgst_paise, OLD.sgst_paise, OLD.igst_paise,
                OLD.base_credits, OLD.bonus_credits, OLD.purchase_lot_id, OLD.bonus_lot_id,
                OLD.idempotency_key, OLD.created_at)
               OR (OLD.hold_id IS NOT NULL AND NEW.hold_id IS DISTINCT FROM OLD.hold_id) THEN
                RAISE EXCEPTION 'refund % may only change its status and gateway details',
                    OLD.id USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refunds_fixed BEFORE UPDATE ON refunds
            FOR EACH ROW EXECUTE FUNCTION refunds_fixed();
        CREATE TRIGGER refunds_no_delete BEFORE DELETE ON refunds
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE billing_events;
        DROP TABLE invoices;
        DROP FUNCTION invoices_fixed();
        DROP TABLE document_sequences;
        DROP TABLE refund_transitions;
        DROP TABLE refunds;
        DROP FUNCTION refunds_fixed();
        ALTER TABLE payments DROP CONSTRAINT payments_refunded_flag;
        ALTER TABLE payments DROP CONSTRAINT payments_refund_bounds;
        ALTER TABLE wallet_holds DROP COLUMN purpose;
        ALTER TABLE credit_lots DROP CONSTRAINT credit_lots_reserved_bounds;
        ALTER TABLE credit_lots DROP COLUMN credits_reserved;
        """
    )
