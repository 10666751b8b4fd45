"""Settlements and payouts (DESIGN §11, issue 14): what a payee is paid of its payable, the
Cashfree Payouts transfers that pay it, and the payout webhooks received.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- `settlements`: one per payee and period (UNIQUE payee + period: a scheduled period key
  such as `weekly:2026-12-07`, or `run:<id>` for a run finance asked for). Its figures are
  fixed at creation and tied by CHECKs: payable (earned up to the cut-off, less what earlier
  settlements took) - reserves still held - this one's reserve = gross (what leaves
  payable); gross = TDS + TCS + fee + net. The reserve is a recorded hold: it stays in the
  payable account until `reserve_until`, and later settlements count it as held until then.
  Only status, its reason, the UTR and the bookkeeping times change after creation.
- `settlement_transfers`: the attempts to pay a settlement, each a Payouts V2 transfer
  under its own `transfer_id` (`stl<settlement hex>a<attempt>`, Cashfree keeps it unique).
  At most one attempt open (new or sent) and at most one that succeeded per settlement.
- `payout_webhooks`: every signed Payouts webhook, once per delivery identity, its account
  numbers masked (with the SHA-256 of the bytes received).
- House INR accounts: TDS payable (194-O), GST TCS payable (section 52), payout fee revenue,
  payouts in transit, and cash at Cashfree Payouts (an asset, paid out of).
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
# code, kind, normal side, name
_ACCOUNTS = (
    ("inr:tds_payable_194o", "tds_payable", "credit", "Income-tax TDS (194-O) withheld"),
    ("inr:gst_tcs_payable", "gst_tcs_payable", "credit", "GST TCS (section 52) collected"),
    ("inr:payout_fee_revenue", "payout_fee_revenue", "credit", "Payout fees charged"),
    ("inr:payouts_in_transit", "payouts_in_transit", "credit", "Payouts sent, not yet paid"),
    ("inr:cashfree_payouts_cash", "payouts_cash", "debit", "Cash at Cashfree Payouts"),
)


def upgrade() -> None:
    accounts = ",\n".join(
        f"('{uuid.uuid5(_HOUSE_NS, code)}', '{code}', 'INR', '{kind}', '{side}', true, '{name}')"
        for code, kind, side, name in _ACCOUNTS
    )
    execute_script(
        f"""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES {accounts};

        CREATE TABLE settlements (
            id                  uuid PRIMARY KEY,
            payee_id            uuid NOT NULL REFERENCES payees (id),
            payable_code        text NOT NULL,
            period              text NOT NULL CHECK (period ~ '^[A-Za-z0-9:_.-]{{1,80}}$'),
            cut_off             timestamptz NOT NULL,
            account_id          uuid NOT NULL REFERENCES payout_accounts (id),
            beneficiary_id      text NOT NULL,
            account_mask        text NOT NULL,
            transfer_mode       text NOT NULL CHECK (transfer_mode IN ('banktransfer', 'upi')),
            payable_paise       bigint NOT NULL,
            reserves_held_paise bigint NOT NULL CHECK (reserves_held_paise >= 0),
            reserve_bps         integer NOT NULL CHECK (reserve_bps BETWEEN 0 AND 10000),
            reserve_paise       bigint NOT NULL CHECK (reserve_paise >= 0),
            reserve_until       timestamptz NOT NULL,
            gross_paise         bigint NOT NULL CHECK (gross_paise > 0),
            tds_bps             integer NOT NULL CHECK (tds_bps BETWEEN 0 AND 10000),
            tds_paise           bigint NOT NULL CHECK (tds_paise >= 0),
            tcs_bps             integer NOT NULL CHECK (tcs_bps BETWEEN 0 AND 10000),
            tcs_paise           bigint NOT NULL CHECK (tcs_paise >= 0),
            fee_paise           bigint NOT NULL CHECK (fee_paise >= 0),
            -- Cashfree's smallest transfer is one rupee.
            net_paise           bigint NOT NULL CHECK (net_paise >= 100),
            status              text NOT NULL CHECK (
                status IN ('pending', 'processing', 'paid', 'failed', 'reversed')),
            failure_code        text,
            failure_reason      text CHECK (length(failure_reason) <= 500),
            utr                 text,
            journal_id          uuid NOT NULL UNIQUE REFERENCES ledger_journals (id),
            created_by          text NOT NULL,
            created_at          timestamptz NOT NULL,
            updated_at          timestamptz NOT NULL,
            paid_at             timestamptz,
            ended_at            timestamptz,
            synced_at           timestamptz NOT NULL,
            UNIQUE (payee_id, period),
            CHECK (payable_paise - reserves_held_paise - reserve_paise = gross_paise),
            CHECK (gross_paise = tds_paise + tcs_paise + fee_paise + net_paise),
            CHECK ((status IN ('paid', 'reversed')) = (utr IS NOT NULL AND paid_at IS NOT NULL)),
            CHECK ((status IN ('failed', 'reversed')) = (ended_at IS NOT NULL))
        );
        CREATE INDEX settlements_payee ON settlements (payee_id, created_at DESC);
        CREATE INDEX settlements_open ON settlements (synced_at)
            WHERE status IN ('pending', 'processing');

        CREATE TABLE settlement_transfers (
            id              uuid PRIMARY KEY,
            settlement_id   uuid NOT NULL REFERENCES settlements (id),
            attempt         integer NOT NULL CHECK (attempt BETWEEN 1 AND 9),
            transfer_id     text NOT NULL UNIQUE CHECK (transfer_id ~ '^[A-Za-z0-9_]{{1,40}}$'),
            amount_paise    bigint NOT NULL CHECK (amount_paise >= 100),
            status          text NOT NULL CHECK (
                status IN ('new', 'sent', 'success', 'failed', 'reversed')),
            cf_transfer_id  text,
            cf_status       text,
            status_code     text,
            utr             text,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            UNIQUE (settlement_id, attempt)
        );
        CREATE UNIQUE INDEX settlement_transfers_one_open ON settlement_transfers (settlement_id)
            WHERE status IN ('new', 'sent');
        CREATE UNIQUE INDEX settlement_transfers_one_paid ON settlement_transfers (settlement_id)
            WHERE status IN ('success', 'reversed');

        CREATE TABLE payout_webhooks (
            id                  uuid PRIMARY KEY,
            dedupe_key          text NOT NULL UNIQUE,
            event_type          text NOT NULL,
            transfer_id         text,
            cf_transfer_id      text,
            transfer_status     text,
            status_code         text,
            settlement_id       uuid,
            -- The body as received but with account numbers and VPAs masked (Cashfree
            -- echoes the beneficiary's instrument; it is never stored whole), and the
            -- SHA-256 of the bytes as received (what the signature covered).
            raw_body            bytea NOT NULL,
            body_sha256         text NOT NULL CHECK (body_sha256 ~ '^[0-9a-f]{{64}}$'),
            headers             jsonb NOT NULL,
            signature_timestamp text NOT NULL,
            outcome             text NOT NULL,
            repeats             integer NOT NULL DEFAULT 0,
            received_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payout_webhooks_transfer ON payout_webhooks (transfer_id);

        -- What a settlement took and where it was to go never changes; only its progress.
        CREATE FUNCTION billing_settlement_fixed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'settlements are never deleted';
            END IF;
            IF (NEW.id, NEW.payee_id, NEW.payable_code, NEW.period, NEW.cut_off,
                NEW.account_id, NEW.beneficiary_id, NEW.transfer_mode, NEW.payable_paise,
                NEW.reserves_held_paise, NEW.reserve_paise, NEW.reserve_until, NEW.gross_paise,
                NEW.tds_paise, NEW.tcs_paise, NEW.fee_paise, NEW.net_paise, NEW.journal_id,
                NEW.created_at)
               IS DISTINCT FROM
               (OLD.id, OLD.payee_id, OLD.payable_code, OLD.period, OLD.cut_off,
                OLD.account_id, OLD.beneficiary_id, OLD.transfer_mode, OLD.payable_paise,
                OLD.reserves_held_paise, OLD.reserve_paise, OLD.reserve_until, OLD.gross_paise,
                OLD.tds_paise, OLD.tcs_paise, OLD.fee_paise, OLD.net_paise, OLD.journal_id,
                OLD.created_at) THEN
                RAISE EXCEPTION 'a settlement''s figures are never changed';
            END IF;
            IF OLD.status IN ('failed', 'reversed') AND NEW.status <> OLD.status THEN
                RAISE EXCEPTION 'a settlement that ended stays ended';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER settlements_fixed BEFORE UPDATE OR DELETE ON settlements
            FOR EACH ROW EXECUTE FUNCTION billing_settlement_fixed();
        CREATE TRIGGER settlement_transfers_no_delete BEFORE DELETE ON settlement_transfers
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER payout_webhooks_no_delete BEFORE DELETE ON payout_webhooks
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("settlements are in the ledger: restore a backup instead")
