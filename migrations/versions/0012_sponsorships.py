"""Sponsor payments (DESIGN §11): a sponsor pays a community through a Cashfree order; the
community's part is held in escrow and released to its payable milestone by milestone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

- `payments` learns a third kind, `sponsorship`: a payment that buys no credits. Its
  `taxable_paise` and `gst_amount_paise` are the platform's own supply (the fee and the GST
  on it, invoiced to the sponsor); the new `passthrough_paise` is what it collects for the
  community (held in escrow, not our revenue). taxable + GST + passthrough = amount, for
  every payment (a purchase's passthrough is 0), and only a sponsorship has one and buys
  no credits.
- `sponsorships`: one per sponsorship payment (UNIQUE payment_id), the path its money
  takes (`escrow` now; `split`, Cashfree Easy Split settling it, is reserved for the split
  path), the pledged amount (the community's whole part), the fee and its GST, and the
  journal that funded the escrow (posted once, when the payment is paid).
- `sponsorship_milestones`: 1-20 per sponsorship, summing to its amount; each moves
  pending → delivered (the community's owner) → released (finance or the sponsor), the
  release's journal named by the row; or, while not released, into a refund (refunding,
  then refunded, or back where it was if the refund is not made), the refund named.
- `refunds` learns to refund a payment that bought no credits: `passthrough_paise` is the
  part of the refund that was collected for someone else (a sponsorship's escrow); such a
  refund takes no credits, from no lot, under no hold; taxable + tax + passthrough =
  amount, for every refund.
- Two house INR accounts: the sponsorship escrow (credit-normal: what we hold for
  communities) and the sponsorship fee revenue.

Journals are keyed (and their ids derived) from the sponsorship and the milestone, so a
repeat posts nothing twice; `ledger verify` checks the rows against their journals.
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_ESCROW = uuid.uuid5(_HOUSE_NS, "inr:sponsorship_escrow")
_FEES = uuid.uuid5(_HOUSE_NS, "inr:sponsorship_fee_revenue")
_ID = "'^[A-Za-z0-9_-]{1,64}$'"


def upgrade() -> None:
    execute_script(
        f"""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES ('{_ESCROW}', 'inr:sponsorship_escrow', 'INR', 'sponsorship_escrow', 'credit',
                true, 'Sponsorship money held for communities until milestones are released'),
               ('{_FEES}', 'inr:sponsorship_fee_revenue', 'INR', 'sponsorship_fee_revenue',
                'credit', true, 'The platform''s fee on sponsorships');

        ALTER TABLE payments
            ADD COLUMN passthrough_paise bigint NOT NULL DEFAULT 0
                CHECK (passthrough_paise >= 0);
        ALTER TABLE payments DROP CONSTRAINT payments_kind_check;
        ALTER TABLE payments ADD CONSTRAINT payments_kind_check
            CHECK (kind IN ('pack', 'custom', 'sponsorship'));
        ALTER TABLE payments DROP CONSTRAINT payments_check;
        ALTER TABLE payments ADD CONSTRAINT payments_figures_add_up
            CHECK (taxable_paise + gst_amount_paise + passthrough_paise = amount_paise);
        -- Only a sponsorship collects for someone else, and it always does.
        ALTER TABLE payments ADD CONSTRAINT payments_passthrough_kind
            CHECK ((kind = 'sponsorship') = (passthrough_paise > 0));
        -- A sponsorship buys no credits; every other payment buys some.
        ALTER TABLE payments DROP CONSTRAINT payments_base_credits_check;
        ALTER TABLE payments ADD CONSTRAINT payments_base_credits_check
            CHECK (CASE WHEN kind = 'sponsorship' THEN base_credits = 0 AND bonus_credits = 0
                        ELSE base_credits > 0 END);

        CREATE TABLE sponsorships (
            id                uuid PRIMARY KEY,
            payment_id        uuid NOT NULL UNIQUE REFERENCES payments (id),
            community_id      text NOT NULL CHECK (community_id ~ {_ID}),
            sponsor_user_id   uuid NOT NULL REFERENCES users (id),
            path              text NOT NULL CHECK (path IN ('escrow', 'split')),
            purpose           text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 500),
            amount_paise      bigint NOT NULL CHECK (amount_paise > 0),
            fee_bps           integer NOT NULL CHECK (fee_bps BETWEEN 1 AND 5000),
            fee_paise         bigint NOT NULL CHECK (fee_paise > 0),
            gst_paise         bigint NOT NULL CHECK (gst_paise >= 0),
            total_paise       bigint NOT NULL,
            status            text NOT NULL
                              CHECK (status IN ('awaiting_payment', 'funded', 'completed')),
            funded_at         timestamptz,
            funded_journal_id uuid UNIQUE REFERENCES ledger_journals (id),
            created_by        text NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            CHECK (total_paise = amount_paise + fee_paise + gst_paise),
            CHECK (fee_paise = (2 * amount_paise * fee_bps + 10000) / 20000),
            CHECK ((status = 'awaiting_payment') = (funded_journal_id IS NULL)),
            CHECK ((funded_journal_id IS NULL) = (funded_at IS NULL))
        );
        CREATE INDEX sponsorships_sponsor
            ON sponsorships (sponsor_user_id, created_at DESC, id DESC);
        CREATE INDEX sponsorships_community
            ON sponsorships (community_id, created_at DESC, id DESC);

        CREATE TABLE sponsorship_milestones (
            sponsorship_id     uuid NOT NULL REFERENCES sponsorships (id),
            seq                integer NOT NULL CHECK (seq BETWEEN 1 AND 20),
            title              text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
            amount_paise       bigint NOT NULL CHECK (amount_paise > 0),
            status             text NOT NULL CHECK (status IN ('pending', 'delivered', 'released',
                                                               'refunding', 'refunded')),
            delivered_at       timestamptz,
            delivered_by       text,
            released_at        timestamptz,
            released_by        text,
            release_journal_id uuid UNIQUE REFERENCES ledger_journals (id),
            refund_id          uuid REFERENCES refunds (id),
            PRIMARY KEY (sponsorship_id, seq),
            CHECK (status IN ('pending', 'refunding', 'refunded') OR delivered_at IS NOT NULL),
            CHECK (status <> 'pending' OR delivered_at IS NULL),
            CHECK ((status IN ('refunding', 'refunded')) = (refund_id IS NOT NULL)),
            CHECK ((delivered_at IS NULL) = (delivered_by IS NULL)),
            CHECK ((status = 'released') = (release_journal_id IS NOT NULL)),
            CHECK ((release_journal_id IS NULL) = (released_at IS NULL)),
            CHECK ((released_at IS NULL) = (released_by IS NULL))
        );

        CREATE INDEX sponsorship_milestones_refund ON sponsorship_milestones (refund_id)
            WHERE refund_id IS NOT NULL;

        ALTER TABLE refunds
            ADD COLUMN passthrough_paise bigint NOT NULL DEFAULT 0
                CHECK (passthrough_paise >= 0);
        ALTER TABLE refunds ALTER COLUMN purchase_lot_id DROP NOT NULL;
        ALTER TABLE refunds DROP CONSTRAINT refunds_check;
        ALTER TABLE refunds ADD CONSTRAINT refunds_figures_add_up
            CHECK (taxable_paise + cgst_paise + sgst_paise + igst_paise + passthrough_paise
                   = amount_paise);
        ALTER TABLE refunds DROP CONSTRAINT refunds_check2;
        -- A credit refund takes credits from its purchase lot; a passthrough refund (of a
        -- sponsorship) takes none, from no lot, under no hold.
        ALTER TABLE refunds ADD CONSTRAINT refunds_takes_something
            CHECK (CASE WHEN purchase_lot_id IS NULL
                        THEN base_credits + bonus_credits = 0 AND passthrough_paise > 0
                             AND hold_id IS NULL
                        ELSE base_credits + bonus_credits > 0 AND passthrough_paise = 0 END);

        -- A sponsorship and its milestones are kept for ever; their status only moves on.
        CREATE TRIGGER sponsorships_no_delete BEFORE DELETE ON sponsorships
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER sponsorship_milestones_no_delete BEFORE DELETE ON sponsorship_milestones
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("sponsorships are in the ledger: restore a backup instead")
