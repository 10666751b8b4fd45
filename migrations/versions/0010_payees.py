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
  account before it, however verified. `cooling_off_s` is the cooling-off the version was
  made with (0 for a payee's first verified account), so the block is checkable.
- Both tables are append-only in what matters: a payee's kind and subject never change, and
  of a payout account version only `superseded_at` is ever set (once, from NULL) and
  `account_sealed` re-sealed (never removed). Everything else is fixed at its insert.
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
            -- bank: the sealed number and its mask, the IFSC; upi: the VPA. Either way the
            -- fingerprint (`AccountRequest.fingerprint`) says which account it is.
            account_sealed        text,
            account_fingerprint   text NOT NULL CHECK (account_fingerprint ~ '^[0-9a-f]{{64}}$'),
            account_mask          text NOT NULL CHECK (length(account_mask) BETWEEN 1 AND 64),
            ifsc                  text CHECK (ifsc ~ '^[A-Z]{{4}}0[A-Z0-9]{{6}}$'),
            vpa                   text CHECK (length(vpa) BETWEEN 3 AND 100),
            verification_status   text NOT NULL CHECK (
                verification_status IN ('pending', 'verified', 'failed')),
            -- Cashfree's name match (DIRECT_MATCH, GOOD_PARTIAL_MATCH, …), its score, the
            -- name the bank holds, the verification's reference and why it failed.
            name_match_result     text CHECK (name_match_result IN ('NO_MATCH',
                'POOR_PARTIAL_MATCH', 'MODERATE_PARTIAL_MATCH', 'GOOD_PARTIAL_MATCH',
                'DIRECT_MATCH')),
            -- The weakest match accepted when this version was verified (a bank account's;
            -- `BILLING_PAYOUT_NAME_MATCH_MIN` then): a verified version is checkable.
            name_match_min        text CHECK (name_match_min IN ('POOR_PARTIAL_MATCH',
                'MODERATE_PARTIAL_MATCH', 'GOOD_PARTIAL_MATCH', 'DIRECT_MATCH')),
            name_match_score      numeric(5, 2) CHECK (name_match_score BETWEEN 0 AND 100),
            name_at_bank          text CHECK (length(name_at_bank) BETWEEN 1 AND 200),
            verification_ref      text CHECK (length(verification_ref) BETWEEN 1 AND 100),
            verification_detail   text CHECK (length(verification_detail) BETWEEN 1 AND 500),
            verified_at           timestamptz,
            -- Not unique: later versions of one payee's same account share the beneficiary
            -- of the version that first registered it (`model.beneficiary_id_for`).
            beneficiary_id        text CHECK (beneficiary_id ~ '^[A-Za-z0-9_|.]{{1,50}}$'),
            payouts_blocked_until timestamptz NOT NULL,
            cooling_off_s         integer NOT NULL CHECK (cooling_off_s >= 0),
            created_by            text NOT NULL,
            created_at            timestamptz NOT NULL DEFAULT now(),
            superseded_at         timestamptz,
            UNIQUE (payee_id, version),
            CHECK (
                (method = 'bank' AND account_sealed IS NOT NULL
                    AND ifsc IS NOT NULL AND vpa IS NULL)
                OR (method = 'upi' AND vpa IS NOT NULL AND account_sealed IS NULL
                    AND ifsc IS NULL)),
            CHECK ((verification_status = 'verified') = (verified_at IS NOT NULL)),
            CHECK ((method = 'bank') = (name_match_min IS NOT NULL)),
            -- Only a verified version names a beneficiary: a failed one is never paid, and
            -- a beneficiary made for it is removed before it is stored.
            CHECK (verification_status = 'verified' OR beneficiary_id IS NULL)
        );
        -- At most one current account per payee, however concurrently changed.
        CREATE UNIQUE INDEX payout_accounts_one_current ON payout_accounts (payee_id)
            WHERE superseded_at IS NULL;
        CREATE INDEX payout_accounts_fingerprint ON payout_accounts (account_fingerprint);
        CREATE INDEX payout_accounts_beneficiary ON payout_accounts (beneficiary_id);

        -- A version is fixed at its insert: where and when it is paid (its beneficiary,
        -- verification, cooling-off) is never rewritten, by the application either. Only
        -- `superseded_at` is set, once, from NULL (a change supersedes it), and
        -- `account_sealed` may be re-sealed under a newer key (same number, the fingerprint
        -- says so), never removed nor added.
        CREATE FUNCTION billing_payout_account_fixed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'payout accounts are never deleted';
            END IF;
            IF (to_jsonb(NEW) - 'superseded_at' - 'account_sealed')
               IS DISTINCT FROM (to_jsonb(OLD) - 'superseded_at' - 'account_sealed') THEN
                RAISE EXCEPTION 'a payout account is never changed (only superseded or re-sealed)';
            END IF;
            IF OLD.superseded_at IS NOT NULL
               AND NEW.superseded_at IS DISTINCT FROM OLD.superseded_at THEN
                RAISE EXCEPTION 'a superseded payout account stays superseded';
            END IF;
            IF (OLD.account_sealed IS NULL) <> (NEW.account_sealed IS NULL) THEN
                RAISE EXCEPTION 'a sealed account number is never removed nor added';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER payout_accounts_fixed BEFORE UPDATE OR DELETE ON payout_accounts
            FOR EACH ROW EXECUTE FUNCTION billing_payout_account_fixed();

        -- Whom a payee pays out for is fixed: its payable account is named by its kind and
        -- subject. Its name and status change; nothing else.
        CREATE FUNCTION billing_payee_fixed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF (NEW.id, NEW.kind, NEW.subject_id, NEW.created_by, NEW.created_at)
               IS DISTINCT FROM
               (OLD.id, OLD.kind, OLD.subject_id, OLD.created_by, OLD.created_at) THEN
                RAISE EXCEPTION 'a payee''s identity (kind, subject) is never changed';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER payees_fixed BEFORE UPDATE ON payees
            FOR EACH ROW EXECUTE FUNCTION billing_payee_fixed();

        CREATE TRIGGER payees_no_delete BEFORE DELETE ON payees
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("payees are named by settlements: restore a backup instead")
