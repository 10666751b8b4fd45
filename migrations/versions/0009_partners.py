"""Partners' revenue share (DESIGN §11): partners, their terms, user attributions, the share
posted for each credited purchase and what refunds take back of it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

- `partners`: the partner and its current terms (share in basis points of a purchase's
  taxable value, 0-5000; active or inactive), changed only by a new version.
- `partner_terms`: every version of a partner's terms, append-only; a share records the
  version and the rate it used, so a change never rewrites what was earned.
- `partner_attributions`: which partner brought a user (CommDesk's user id, the token's
  `sub`), for a window [valid_from, valid_until) (open-ended when valid_until is null).
  An exclusion constraint keeps at most one attribution in force per user at any instant,
  whoever inserts it and however concurrently (btree_gist gives text equality in GiST).
- `partner_shares`: at most one per payment (UNIQUE payment_id), with the taxable value,
  the rate, the share and its journal.
- `partner_share_reversals`: at most one per refund (UNIQUE refund_id), with the refund's
  taxable value (the cumulative rounding needs the running total) and the share it took
  back; a refund whose proportion rounds to nothing takes back 0 and posts no journal.
- A house INR account for the expense (debit-normal). Each partner's payable account is
  opened when it first earns.

payment_id and refund_id carry no foreign key: the rows are written in the payment's and
the refund's own transactions, and `ledger verify` checks them against their journals.
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_EXPENSE = uuid.uuid5(_HOUSE_NS, "inr:partner_expense")
_ID = "'^[A-Za-z0-9_-]{1,64}$'"


def upgrade() -> None:
    execute_script(
        f"""
        CREATE EXTENSION IF NOT EXISTS btree_gist;

        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES ('{_EXPENSE}', 'inr:partner_expense', 'INR', 'partner_expense', 'debit',
                true, 'Revenue share earned by partners (an expense)');

        CREATE TABLE partners (
            id           text PRIMARY KEY CHECK (id ~ {_ID}),
            name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            share_bps    integer NOT NULL CHECK (share_bps BETWEEN 0 AND 5000),
            status       text NOT NULL CHECK (status IN ('active', 'inactive')),
            version      integer NOT NULL CHECK (version >= 1),
            created_by   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE partner_terms (
            partner_id   text NOT NULL REFERENCES partners (id),
            version      integer NOT NULL CHECK (version >= 1),
            share_bps    integer NOT NULL CHECK (share_bps BETWEEN 0 AND 5000),
            status       text NOT NULL CHECK (status IN ('active', 'inactive')),
            reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            created_by   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (partner_id, version)
        );

        CREATE TABLE partner_attributions (
            id               uuid PRIMARY KEY,
            user_external_id text NOT NULL CHECK (length(user_external_id) BETWEEN 1 AND 200),
            partner_id       text NOT NULL REFERENCES partners (id),
            valid_from       timestamptz NOT NULL,
            valid_until      timestamptz,
            created_by       text NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT now(),
            CHECK (valid_until IS NULL OR valid_until > valid_from),
            -- One attribution in force per user at any instant.
            CONSTRAINT partner_attributions_one_in_force EXCLUDE USING gist (
                user_external_id WITH =, tstzrange(valid_from, valid_until, '[)') WITH &&)
        );
        CREATE INDEX partner_attributions_partner ON partner_attributions (partner_id);

        CREATE TABLE partner_shares (
            id             uuid PRIMARY KEY,
            payment_id     uuid NOT NULL UNIQUE,
            partner_id     text NOT NULL REFERENCES partners (id),
            attribution_id uuid NOT NULL REFERENCES partner_attributions (id),
            terms_version  integer NOT NULL CHECK (terms_version >= 1),
            taxable_paise  bigint NOT NULL CHECK (taxable_paise > 0),
            share_bps      integer NOT NULL CHECK (share_bps BETWEEN 0 AND 5000),
            share_paise    bigint NOT NULL CHECK (share_paise > 0),
            journal_id     uuid NOT NULL UNIQUE REFERENCES ledger_journals (id),
            created_at     timestamptz NOT NULL,
            CHECK (share_paise <= taxable_paise)
        );
        CREATE INDEX partner_shares_partner ON partner_shares (partner_id, created_at DESC);

        CREATE TABLE partner_share_reversals (
            id                   uuid PRIMARY KEY,
            refund_id            uuid NOT NULL UNIQUE,
            share_id             uuid NOT NULL REFERENCES partner_shares (id),
            refund_taxable_paise bigint NOT NULL CHECK (refund_taxable_paise >= 0),
            share_paise          bigint NOT NULL CHECK (share_paise >= 0),
            journal_id           uuid UNIQUE REFERENCES ledger_journals (id),
            created_at           timestamptz NOT NULL,
            -- A journal exactly when something was taken back.
            CHECK ((share_paise = 0) = (journal_id IS NULL))
        );
        CREATE INDEX partner_share_reversals_share ON partner_share_reversals (share_id);

        -- What a partner earned, and the terms it earned it on: never changed. A partner
        -- is made inactive, never deleted.
        CREATE TRIGGER partners_no_delete BEFORE DELETE ON partners
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER partner_terms_append_only BEFORE UPDATE OR DELETE ON partner_terms
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER partner_attributions_append_only
            BEFORE UPDATE OR DELETE ON partner_attributions
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER partner_shares_append_only BEFORE UPDATE OR DELETE ON partner_shares
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER partner_share_reversals_append_only
            BEFORE UPDATE OR DELETE ON partner_share_reversals
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("partner shares are in the ledger: restore a backup instead")
