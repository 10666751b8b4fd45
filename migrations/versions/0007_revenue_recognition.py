"""Revenue recognized at consumption (DESIGN §10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Until now a purchase's taxable value sat in deferred revenue for ever. From here on every
consumption moves the drawn lots' share of cost basis out of deferred revenue in the same
journal, so each lot tracks what of its basis was recognized and what was refunded:

- `credit_lots.recognized_paise`: basis recognized by consumption;
- `credit_lots.refunded_paise`: basis that left with refunds (the refunds' taxable value);
- `credit_lots.backfilled_paise`: what this migration put on the lot's figures with no
  movement to show for it (fixed afterwards): the basis it recognized for what was consumed
  before it, plus what refunds before it took (movements written before it carry no basis),
  so that `recognized + refunded = backfilled + Σ movements' basis` can be verified per lot;
- `credit_lot_movements.basis_paise`: the basis one movement recognized or refunded.

Unrecognized basis is `taxable - recognized - refunded`; deferred revenue equals its sum.

What was consumed before this migration is recognized now, per lot, by the same rule a
consumption follows from here on, applied as if it had been one draw: the lot's unrecognized
basis * consumed / (consumed + remaining), half up, and all of it when nothing remains (also
when refunds alone emptied the lot and left a paisa or two of basis, as a refund emptying a
lot settles it from here on); one journal (`recognition:backfill:0007`) moves the total
recognized from deferred to platform revenue.
New house accounts: platform fee revenue and breakage revenue (community payables are opened
per community when it first earns).
"""

from __future__ import annotations

import uuid

from commdesk_billing.db.migrate import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")  # as in 0001
_NEW_HOUSE_ACCOUNTS = [
    (
        "inr:platform_fee_revenue",
        "INR",
        "platform_fee_revenue",
        "credit",
        "Platform fees on community spends",
    ),
    ("inr:breakage_revenue", "INR", "breakage_revenue", "credit", "Basis of expired credits"),
]
_DEFERRED = uuid.uuid5(_HOUSE_NS, "inr:deferred_revenue")
_PLATFORM = uuid.uuid5(_HOUSE_NS, "inr:platform_revenue")
_BACKFILL_JOURNAL = uuid.uuid5(_HOUSE_NS, "journal:recognition:backfill:0007")


def upgrade() -> None:
    for code, ledger, kind, side, name in _NEW_HOUSE_ACCOUNTS:
        account_id = uuid.uuid5(_HOUSE_NS, code)
        execute_script(
            f"""
            INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
            VALUES ('{account_id}', '{code}', '{ledger}', '{kind}', '{side}', true, '{name}')
            """
        )
    execute_script(
        """
        ALTER TABLE credit_lots
            ADD COLUMN recognized_paise bigint NOT NULL DEFAULT 0,
            ADD COLUMN refunded_paise   bigint NOT NULL DEFAULT 0,
            ADD COLUMN backfilled_paise bigint NOT NULL DEFAULT 0,
            ADD CONSTRAINT credit_lots_basis CHECK (
                recognized_paise >= 0 AND refunded_paise >= 0 AND backfilled_paise >= 0
                AND recognized_paise + refunded_paise <= taxable_paise);
        ALTER TABLE credit_lot_movements ADD COLUMN basis_paise bigint NOT NULL DEFAULT 0;

        -- What refunds already took from each purchase lot's basis.
        UPDATE credit_lots l SET refunded_paise = r.taxable
          FROM (SELECT payment_id, sum(taxable_paise) AS taxable FROM refunds
                 WHERE status = 'SUCCESS' GROUP BY payment_id) r
         WHERE l.source = 'purchase' AND l.source_ref = r.payment_id::text;

        -- What was consumed before today, recognized as one draw per lot, and all of the
        -- basis of an empty lot. In numeric, as paise times credits can pass bigint with
        -- the largest top-ups the settings allow.
        UPDATE credit_lots l
           SET recognized_paise = b.share
          FROM (
            SELECT id,
                   CASE WHEN credits_remaining = 0 THEN taxable_paise - refunded_paise
                        ELSE div(2 * (taxable_paise - refunded_paise)::numeric
                                   * (credits_granted - credits_remaining - credits_refunded)
                                 + (credits_granted - credits_refunded),
                                 2 * (credits_granted - credits_refunded))::bigint
                   END AS share
              FROM credit_lots
             WHERE taxable_paise > refunded_paise
               AND (credits_granted - credits_remaining - credits_refunded > 0
                    OR credits_remaining = 0)
          ) b
         WHERE l.id = b.id;

        -- No movement before today carries basis, so all of the above is backfill.
        UPDATE credit_lots SET backfilled_paise = recognized_paise + refunded_paise
         WHERE recognized_paise + refunded_paise > 0;
        """
    )
    # From here on the backfill is part of a lot's fixed record, like its cost basis.
    execute_script(
        """
        CREATE OR REPLACE FUNCTION credit_lots_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (NEW.id, NEW.wallet_id, NEW.source, NEW.credits_granted, NEW.paid_paise,
                NEW.taxable_paise, NEW.source_ref, NEW.journal_id, NEW.granted_at,
                NEW.expires_at, NEW.backfilled_paise)
               IS DISTINCT FROM
               (OLD.id, OLD.wallet_id, OLD.source, OLD.credits_granted, OLD.paid_paise,
                OLD.taxable_paise, OLD.source_ref, OLD.journal_id, OLD.granted_at,
                OLD.expires_at, OLD.backfilled_paise) THEN
                RAISE EXCEPTION 'credit lot % may only change its remaining, refunded, '
                    'reserved and recognized figures', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;
        """
    )
    # One journal for the whole backfill (house accounts only, so nothing to chain).
    execute_script(
        f"""
        WITH total AS (SELECT coalesce(sum(recognized_paise), 0) AS paise FROM credit_lots),
        journal AS (
            INSERT INTO ledger_journals (id, idempotency_key, kind, description, metadata,
                                         created_at)
            SELECT '{_BACKFILL_JOURNAL}', 'recognition:backfill:0007',
                   'revenue.recognized.backfill',
                   'revenue for credits consumed before recognition at consumption',
                   jsonb_build_object('migration', '0007'), now()
              FROM total WHERE paise > 0
            RETURNING id
        )
        INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, created_at)
        SELECT j.id, a.account_id, 'INR', a.sign * t.paise, now()
          FROM journal j, total t,
               (VALUES ('{_DEFERRED}'::uuid, 1), ('{_PLATFORM}'::uuid, -1)) AS a(account_id, sign)
        """
    )


def downgrade() -> None:
    raise NotImplementedError("recognized revenue is in the ledger: restore a backup instead")
