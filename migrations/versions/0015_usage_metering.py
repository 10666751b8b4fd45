"""Usage metering (issue 15): usage events reported by CommDesk services, rated by a
versioned price book into credit consumption.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

- `usage_meters`: one row per meter; the row finance's price changes lock (a rating batch
  takes it FOR SHARE), so a new version never takes effect under an event being rated.
- `usage_price_versions`: the price book, append-only. Per meter and version: when it takes
  effect, its graduated tiers (milli-credits per unit, per calendar month UTC), and what
  happens when the wallet has too few credits (`reject`, or `overdraft` up to a bound).
- `usage_metering` (the seed's table): one row per usage event, append-only, unique per
  (reporting service, its event id). It records the price version that rated it, the month's
  running figures it was rated against, what it cost, what was debited from the wallet and
  what was left owing.
- `usage_aggregates`: per wallet, meter and period (month and day, UTC) the sums of its
  events, kept in the transaction that records them.
- `usage_debts`: per wallet and meter, usage left unpaid under an overdraft policy, and what
  was repaid of it; `usage_debt_repayments`: each repayment (append-only), debited from the
  wallet under its own key.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_METER = "'^[a-z][a-z0-9_.:-]{0,63}$'"
_APPEND_ONLY = ("usage_price_versions", "usage_metering", "usage_debt_repayments")


def upgrade() -> None:
    execute_script(
        f"""
        CREATE TABLE usage_meters (
            meter          text PRIMARY KEY CHECK (meter ~ {_METER}),
            latest_version integer NOT NULL CHECK (latest_version >= 1),
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE usage_price_versions (
            meter                   text NOT NULL REFERENCES usage_meters (meter),
            version                 integer NOT NULL CHECK (version >= 1),
            effective_from          timestamptz NOT NULL,
            tiers                   jsonb NOT NULL CHECK (
                jsonb_typeof(tiers) = 'array' AND jsonb_array_length(tiers) BETWEEN 1 AND 20),
            on_insufficient         text NOT NULL CHECK (
                on_insufficient IN ('reject', 'overdraft')),
            overdraft_limit_credits bigint NOT NULL CHECK (
                overdraft_limit_credits BETWEEN 0 AND 10000000000000),
            reason                  text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
            created_by              text NOT NULL,
            created_at              timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (meter, version),
            UNIQUE (meter, effective_from),
            CHECK (on_insufficient = 'overdraft' OR overdraft_limit_credits = 0)
        );

        CREATE TABLE usage_metering (
            id                  uuid PRIMARY KEY,
            source              text NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
            event_id            text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 128),
            wallet_id           uuid NOT NULL REFERENCES wallets (id),
            meter               text NOT NULL,
            quantity            bigint NOT NULL CHECK (quantity BETWEEN 1 AND 1000000000),
            occurred_at         timestamptz NOT NULL,
            received_at         timestamptz NOT NULL DEFAULT now(),
            price_version       integer NOT NULL,
            period_month        date NOT NULL,
            period_day          date NOT NULL,
            units_before        bigint NOT NULL CHECK (units_before >= 0),
            millicredits_before bigint NOT NULL CHECK (millicredits_before >= 0),
            millicredits        bigint NOT NULL CHECK (millicredits >= 0),
            credits             bigint NOT NULL CHECK (credits >= 0),
            outcome             text NOT NULL CHECK (outcome IN ('debited', 'rejected')),
            reject_reason       text,
            debited_credits     bigint NOT NULL CHECK (debited_credits >= 0),
            debt_credits        bigint NOT NULL CHECK (debt_credits >= 0),
            debt_after_credits  bigint NOT NULL CHECK (debt_after_credits >= 0),
            UNIQUE (source, event_id),
            FOREIGN KEY (meter, price_version) REFERENCES usage_price_versions (meter, version),
            CHECK ((outcome = 'rejected') = (reject_reason IS NOT NULL)),
            CHECK (outcome = 'rejected' OR debited_credits + debt_credits = credits),
            CHECK (outcome = 'debited' OR (debited_credits = 0 AND debt_credits = 0)),
            CHECK (period_month = date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date),
            CHECK (period_day = (occurred_at AT TIME ZONE 'UTC')::date)
        );
        CREATE INDEX usage_metering_wallet ON usage_metering (wallet_id, meter, occurred_at);

        CREATE TABLE usage_aggregates (
            wallet_id       uuid NOT NULL REFERENCES wallets (id),
            meter           text NOT NULL REFERENCES usage_meters (meter),
            granularity     text NOT NULL CHECK (granularity IN ('month', 'day')),
            period_start    date NOT NULL,
            units           bigint NOT NULL CHECK (units >= 0),
            millicredits    bigint NOT NULL CHECK (millicredits >= 0),
            credits         bigint NOT NULL CHECK (credits >= 0),
            debited_credits bigint NOT NULL CHECK (debited_credits >= 0),
            debt_credits    bigint NOT NULL CHECK (debt_credits >= 0),
            events          bigint NOT NULL CHECK (events >= 0),
            rejected_events bigint NOT NULL CHECK (rejected_events >= 0),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (wallet_id, meter, granularity, period_start),
            CHECK (credits = debited_credits + debt_credits)
        );

        CREATE TABLE usage_debts (
            wallet_id        uuid NOT NULL REFERENCES wallets (id),
            meter            text NOT NULL REFERENCES usage_meters (meter),
            incurred_credits bigint NOT NULL CHECK (incurred_credits >= 0),
            repaid_credits   bigint NOT NULL CHECK (repaid_credits >= 0),
            updated_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (wallet_id, meter),
            CHECK (repaid_credits <= incurred_credits)
        );

        CREATE TABLE usage_debt_repayments (
            id            uuid PRIMARY KEY,
            wallet_id     uuid NOT NULL REFERENCES wallets (id),
            meter         text NOT NULL REFERENCES usage_meters (meter),
            repaid_before bigint NOT NULL CHECK (repaid_before >= 0),
            credits       bigint NOT NULL CHECK (credits >= 1),
            cause         text NOT NULL CHECK (length(cause) BETWEEN 1 AND 200),
            created_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (wallet_id, meter, repaid_before)
        );
        """
    )
    for table in _APPEND_ONLY:
        execute_script(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            """
        )


def downgrade() -> None:
    raise NotImplementedError("usage is in the ledger: restore a backup instead")
