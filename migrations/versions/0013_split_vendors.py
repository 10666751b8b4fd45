"""Sponsorships on the split path (DESIGN §11, cashfree.md §14): a community registered as a
Cashfree Easy Split vendor is paid its part of a sponsorship by Cashfree directly.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

- `split_vendors`: one per community that finance registered at Cashfree, its `vendor_id`
  derived from the community's id (so a retry or a second registration names the same
  vendor), the payout-account version it was registered with (shown masked; the number
  itself is never stored here), the KYC details finance gave (the PAN masked), and the
  vendor's status as Cashfree last reported it (IN_BENE_CREATION, ACTIVE, BLOCKED,
  DELETED). Only an ACTIVE vendor is given split sponsorships.
- `sponsorships` learns the vendor its split went to (`vendor_id`, set exactly on the split
  path) and what successful refunds returned of a split sponsorship's community part
  (`split_refunded_paise`; the escrow path counts refunded milestones instead).
- `vendor_settlements`: one per Cashfree vendor settlement (its id is Cashfree's), the
  status we applied and the journals that moved the vendor's due amount: posted once on
  SUCCESS, reversed once on REVERSED after SUCCESS.
- `vendor_settlement_webhooks`: the signed deliveries, raw, once per signed identity
  (type, settlement, status), with how many repeats came and what became of them.
- One house INR account: `inr:vendor_settlements_due`, credit-normal: what Cashfree
  collected for vendors (communities) and will settle to them, not ours; negative for a
  vendor when a refund took back more than it still had due (recoverable from its next
  settlement, which Cashfree nets).
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_DUE = uuid.uuid5(_HOUSE_NS, "inr:vendor_settlements_due")
_ID = "'^[A-Za-z0-9_-]{1,64}$'"
_VENDOR = "'^[A-Za-z0-9_]{1,50}$'"


def upgrade() -> None:
    execute_script(
        f"""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES ('{_DUE}', 'inr:vendor_settlements_due', 'INR', 'vendor_settlements_due',
                'credit', true,
                'Collected for Easy Split vendors (communities); Cashfree settles it to them');

        CREATE TABLE split_vendors (
            community_id      text PRIMARY KEY CHECK (community_id ~ {_ID}),
            vendor_id         text NOT NULL UNIQUE CHECK (vendor_id ~ {_VENDOR}),
            payee_id          uuid NOT NULL REFERENCES payees (id),
            account_id        uuid NOT NULL REFERENCES payout_accounts (id),
            method            text NOT NULL CHECK (method IN ('bank', 'upi')),
            account_mask      text NOT NULL CHECK (length(account_mask) BETWEEN 1 AND 60),
            name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
            email             text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
            phone             text NOT NULL CHECK (phone ~ '^[0-9]{{8,12}}$'),
            account_type      text NOT NULL CHECK (account_type IN ('BUSINESS', 'INDIVIDUAL')),
            business_type     text NOT NULL CHECK (length(business_type) BETWEEN 1 AND 60),
            pan_mask          text NOT NULL CHECK (pan_mask ~ '^X{{6}}[0-9A-Z]{{4}}$'),
            gstin             text CHECK (gstin ~ '^[0-9]{{2}}[A-Z0-9]{{13}}$'),
            status            text NOT NULL CHECK (status ~ '^[A-Z_]{{1,40}}$'),
            remarks           text CHECK (length(remarks) <= 500),
            status_checked_at timestamptz NOT NULL,
            created_by        text NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now()
        );

        ALTER TABLE sponsorships
            ADD COLUMN vendor_id text CHECK (vendor_id ~ {_VENDOR}),
            ADD COLUMN split_refunded_paise bigint NOT NULL DEFAULT 0
                CHECK (split_refunded_paise >= 0);
        ALTER TABLE sponsorships ADD CONSTRAINT sponsorships_split_vendor
            CHECK ((path = 'split') = (vendor_id IS NOT NULL));
        ALTER TABLE sponsorships ADD CONSTRAINT sponsorships_split_refunded
            CHECK (split_refunded_paise <= amount_paise
                   AND (path = 'split' OR split_refunded_paise = 0));

        CREATE TABLE vendor_settlements (
            settlement_id       text PRIMARY KEY CHECK (length(settlement_id) BETWEEN 1 AND 64),
            vendor_id           text NOT NULL CHECK (vendor_id ~ {_VENDOR}),
            community_id        text NOT NULL REFERENCES split_vendors (community_id),
            amount_paise        bigint NOT NULL,
            status              text NOT NULL
                                CHECK (status IN ('CREATED', 'SUCCESS', 'FAILED', 'REVERSED')),
            utr                 text CHECK (length(utr) <= 64),
            reason              text CHECK (length(reason) <= 500),
            settled_journal_id  uuid UNIQUE REFERENCES ledger_journals (id),
            reversed_journal_id uuid UNIQUE REFERENCES ledger_journals (id),
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            -- Money moved only on SUCCESS, and moved back only after it.
            CHECK (status <> 'SUCCESS' OR (settled_journal_id IS NOT NULL
                                           AND reversed_journal_id IS NULL)),
            CHECK (status IN ('SUCCESS', 'REVERSED') OR settled_journal_id IS NULL),
            CHECK (reversed_journal_id IS NULL OR (status = 'REVERSED'
                                                   AND settled_journal_id IS NOT NULL))
        );
        CREATE INDEX vendor_settlements_vendor ON vendor_settlements (vendor_id, created_at);

        CREATE TABLE vendor_settlement_webhooks (
            id            uuid PRIMARY KEY,
            dedupe_key    text NOT NULL UNIQUE,
            event_type    text NOT NULL,
            settlement_id text,
            vendor_id     text,
            raw_body      bytea NOT NULL,
            headers       jsonb NOT NULL,
            outcome       text NOT NULL,
            duplicates    integer NOT NULL DEFAULT 0,
            received_at   timestamptz NOT NULL DEFAULT now(),
            last_seen_at  timestamptz NOT NULL DEFAULT now()
        );

        -- A vendor and its settlements are kept for ever (the ledger names them).
        CREATE TRIGGER split_vendors_no_delete BEFORE DELETE ON split_vendors
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER vendor_settlements_no_delete BEFORE DELETE ON vendor_settlements
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("split sponsorships are in the ledger: restore a backup instead")
