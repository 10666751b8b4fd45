"""Subscriptions (DESIGN §12): versioned plans, a member's subscriptions, their billing
periods and every charge made for them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

- `subscription_plans`: append-only versions of a plan (code, version). A price change is a
  new version; a subscription keeps the version it bought until its renewal or a change.
  Priced in credits (`price_credits`) or in INR (`price_paise`, renewed on a mandate: not
  sold yet), never both. The interval is a unit (day, week, month, year) times a count; the
  grace period and the dunning schedule (retry offsets from the period's start) are seconds.
- `subscriptions`: the seed's table. The plan version in force, the paid period
  (`current_period`, its start and end), the plan that takes over at the next renewal (a
  downgrade), cancellation at period end. At most one live (active or past due)
  subscription per member and plan code.
- `subscription_periods`: one row per billing period, unique per (subscription, number)
  and per (subscription, start): a renewal is made once whatever races or crashes. Its
  price is fixed when the row is made; dunning state (attempts, next retry, grace) lives
  on it.
- `subscription_charges`: every wallet charge for a subscription (a period's price, an
  upgrade's prorated difference), with the hold it was captured from and the operation
  key that makes a repeat a no-op (unique).
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_CODE = "'^[a-z0-9][a-z0-9_-]{0,39}$'"


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE subscription_plans (
            code              text NOT NULL CHECK (code ~ {_CODE}),
            version           integer NOT NULL CHECK (version >= 1),
            name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
            currency          text NOT NULL CHECK (currency IN ('CREDITS', 'INR')),
            price_credits     bigint CHECK (price_credits BETWEEN 1 AND 10000000000000),
            price_paise       bigint CHECK (price_paise BETWEEN 100 AND 10000000000),
            interval_unit     text NOT NULL CHECK (interval_unit IN ('day', 'week', 'month',
                                                                     'year')),
            interval_count    integer NOT NULL CHECK (interval_count BETWEEN 1 AND 366),
            grace_period_s    bigint NOT NULL CHECK (grace_period_s BETWEEN 0 AND 7776000),
            dunning_offsets_s bigint[] NOT NULL CHECK (cardinality(dunning_offsets_s) <= 10),
            active            boolean NOT NULL,
            created_by        text NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (code, version),
            CONSTRAINT subscription_plans_one_price CHECK (
                (currency = 'CREDITS' AND price_credits IS NOT NULL AND price_paise IS NULL)
                OR (currency = 'INR' AND price_paise IS NOT NULL AND price_credits IS NULL))
        );
        CREATE TRIGGER subscription_plans_append_only
            BEFORE UPDATE OR DELETE ON subscription_plans
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();

        CREATE TABLE subscriptions (
            id                    uuid PRIMARY KEY,
            user_id               uuid NOT NULL REFERENCES users (id),
            user_ref              text NOT NULL,
            wallet_id             uuid NOT NULL REFERENCES wallets (id),
            plan_code             text NOT NULL,
            plan_version          integer NOT NULL,
            status                text NOT NULL CHECK (status IN ('active', 'past_due',
                                                                  'cancelled', 'expired')),
            anchor_at             timestamptz NOT NULL,
            current_period        integer NOT NULL CHECK (current_period >= 1),
            current_period_start  timestamptz NOT NULL,
            current_period_end    timestamptz NOT NULL,
            cancel_at_period_end  boolean NOT NULL DEFAULT false,
            next_plan_code        text,
            next_plan_version     integer,
            ended_at              timestamptz,
            ended_reason          text,
            created_at            timestamptz NOT NULL DEFAULT now(),
            updated_at            timestamptz NOT NULL DEFAULT now(),
            FOREIGN KEY (plan_code, plan_version) REFERENCES subscription_plans (code, version),
            FOREIGN KEY (next_plan_code, next_plan_version)
                REFERENCES subscription_plans (code, version),
            CHECK (current_period_end > current_period_start),
            CHECK ((status IN ('cancelled', 'expired')) = (ended_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX subscriptions_one_live_per_plan ON subscriptions (user_id, plan_code)
            WHERE status IN ('active', 'past_due');
        CREATE INDEX subscriptions_of_user ON subscriptions (user_id, created_at DESC, id DESC);
        CREATE INDEX subscriptions_due ON subscriptions (current_period_end)
            WHERE status IN ('active', 'past_due');

        CREATE TABLE subscription_periods (
            subscription_id uuid NOT NULL REFERENCES subscriptions (id),
            number          integer NOT NULL CHECK (number >= 1),
            period_start    timestamptz NOT NULL,
            period_end      timestamptz NOT NULL,
            plan_code       text NOT NULL,
            plan_version    integer NOT NULL,
            price_credits   bigint NOT NULL CHECK (price_credits >= 1),
            status          text NOT NULL CHECK (status IN ('pending', 'past_due', 'paid',
                                                            'unpaid', 'void')),
            attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_retry_at   timestamptz,
            grace_until     timestamptz NOT NULL,
            paid_at         timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (subscription_id, number),
            UNIQUE (subscription_id, period_start),
            FOREIGN KEY (plan_code, plan_version) REFERENCES subscription_plans (code, version),
            CHECK (period_end > period_start),
            CHECK ((status = 'paid') = (paid_at IS NOT NULL))
        );

        CREATE TABLE subscription_charges (
            id              uuid PRIMARY KEY,
            subscription_id uuid NOT NULL REFERENCES subscriptions (id),
            period_number   integer NOT NULL,
            kind            text NOT NULL CHECK (kind IN ('period', 'upgrade')),
            credits         bigint NOT NULL CHECK (credits >= 1),
            operation_key   text NOT NULL UNIQUE,
            hold_id         uuid NOT NULL,
            from_plan       text,
            to_plan         text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            FOREIGN KEY (subscription_id, period_number)
                REFERENCES subscription_periods (subscription_id, number)
        );
        -- One charge of a period's price per period, whatever races.
        CREATE UNIQUE INDEX subscription_charges_one_per_period
            ON subscription_charges (subscription_id, period_number) WHERE kind = 'period';
        CREATE TRIGGER subscription_charges_append_only
            BEFORE UPDATE OR DELETE ON subscription_charges
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("subscription charges are in the ledger: restore a backup instead")
