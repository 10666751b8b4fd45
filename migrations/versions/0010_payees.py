"""Payees and their payout accounts (DESIGN §11, issue 14): who money goes out to, and where.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

- `payees`: one per community or partner that is paid out (UNIQUE kind + subject). The
  subject is the community's id (CommDesk's MongoDB) or the partner's id (`partners`); its
  payable account is `community:<id>:payable` or `partner:<id>:payable`. A payee is
  suspended, never deleted.
- `payout_accounts`: every account a payee has had, append-only but for the fields that
  follow its verification and its Cashfree beneficiary. At most one is current per payee
  (`superseded_at IS NULL`); a change inserts a new version and supersedes the old in one
  transaction. A bank account is stored sealed (`security/sealed.py`: AES-256-GCM, the
  payee bound in), found again by an HMAC fingerprint, shown by its mask; the number itself
  is never in a column. A UPI VPA is not a secret in the same sense, but is masked too.
  `verification_status` follows Cashfree's bank-account verification (name match
  reported); `payouts_blocked_until` is the cooling-off after a change: no payout to an
  account before it, however verified.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = "'^[A-Za-z0-9_-]{1,64}$'"


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE payees (
            id            uuid PRIMARY KEY,
            kind          text NOT NULL CHECK (kind IN ('community', 'partner')),
            subject_id    text NOT NULL CHECK (subject_id ~ {_ID}),
            display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
            status        text NOT NULL CHECK (status IN ('active', 'suspended')),
            created_by    text NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (kind, subject_id)
        );

        CREATE TABLE payout_accounts (
            id                    uuid PRIMARY KEY,
            payee_id              uuid NOT NULL REFERENCES payees (id),
            version               integer NOT NULL CHECK (version >= 1),
            method                text NOT NULL CHECK (method IN ('bank', 'upi')),
            account_holder        text NOT NULL CHECK (length(account_holder) BETWEEN 1 AND 100),
            -- bank: the sealed number, its fingerprint and mask, the IFSC; upi: the VPA.
            account_sealed        text,
            account_fingerprint   text CHECK (account_fingerprint ~ '^[0-9a-f]{{64}}$'),
            account_mask          text NOT NULL CHECK (length(account_mask) BETWEEN 1 AND 64),
            ifsc                  text CHECK (ifsc ~ '^[A-Z]{{4}}0[A-Z0-9]{{6}}$'),
            vpa                   text CHECK (length(vpa) BETWEEN 3 AND 100),
            verification_status   text NOT NULL CHECK (
                verification_status IN ('pending', 'verified', 'failed')),
            -- Cashfree's name match (DIRECT_MATCH, GOOD_PARTIAL_MATCH, …), its score, the
            -- name the bank holds, the verification's reference and why it failed.
            name_match_result     text,
            name_match_score      numeric(5, 2),
            name_at_bank          text,
            verification_ref      text,
            verification_detail   text,
            verified_at           timestamptz,
            beneficiary_id        text UNIQUE CHECK (beneficiary_id ~ '^[A-Za-z0-9_|.]{{1,50}}$'),
            payouts_blocked_until timestamptz NOT NULL,
            created_by            text NOT NULL,
            created_at            timestamptz NOT NULL DEFAULT now(),
            superseded_at         timestamptz,
            UNIQUE (payee_id, version),
            CHECK (
                (method = 'bank' AND account_sealed IS NOT NULL
                    AND account_fingerprint IS NOT NULL AND ifsc IS NOT NULL AND vpa IS NULL)
                OR (method = 'upi' AND vpa IS NOT NULL AND account_sealed IS NULL
                    AND ifsc IS NULL)),
            CHECK ((verification_status = 'verified') = (verified_at IS NOT NULL))
        );
        -- At most one current account per payee, however concurrently changed.
        CREATE UNIQUE INDEX payout_accounts_one_current ON payout_accounts (payee_id)
            WHERE superseded_at IS NULL;
        CREATE INDEX payout_accounts_fingerprint ON payout_accounts (account_fingerprint);

        -- The identity of an account version never changes: only its verification, its
        -- beneficiary and its superseding are filled in later.
        CREATE FUNCTION billing_payout_account_fixed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'payout accounts are never deleted';
            END IF;
            -- account_sealed may change (a re-seal under a newer key: same number), but
            -- never to nothing; the fingerprint says it is the same number.
            IF (NEW.id, NEW.payee_id, NEW.version, NEW.method, NEW.account_holder,
                NEW.account_fingerprint, NEW.account_mask, NEW.ifsc,
                NEW.vpa, NEW.created_by, NEW.created_at)
               IS DISTINCT FROM
               (OLD.id, OLD.payee_id, OLD.version, OLD.method, OLD.account_holder,
                OLD.account_fingerprint, OLD.account_mask, OLD.ifsc,
                OLD.vpa, OLD.created_by, OLD.created_at) THEN
                RAISE EXCEPTION 'a payout account''s identity is never changed';
            END IF;
            IF OLD.superseded_at IS NOT NULL
               AND NEW.superseded_at IS DISTINCT FROM OLD.superseded_at THEN
                RAISE EXCEPTION 'a superseded payout account stays superseded';
            END IF;
            IF OLD.account_sealed IS NOT NULL AND NEW.account_sealed IS NULL THEN
                RAISE EXCEPTION 'a sealed account number is never removed';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER payout_accounts_fixed BEFORE UPDATE OR DELETE ON payout_accounts
            FOR EACH ROW EXECUTE FUNCTION billing_payout_account_fixed();

        CREATE TRIGGER payees_no_delete BEFORE DELETE ON payees
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("payees are named by settlements: restore a backup instead")
