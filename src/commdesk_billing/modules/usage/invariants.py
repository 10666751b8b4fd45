"""The usage module's checks for `ledger verify`.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows


@check("usage_debits")
async def usage_debits(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every debited usage event has exactly its wallet debit line (key `usage:<id>`, same
    wallet, same credits) — none when nothing was debited — and every usage line has its
    event; every debt repayment has its line likewise."""
    for r in await rows(
        conn,
        """
        SELECT u.id, u.wallet_id, u.debited_credits, t.wallet_id AS line_wallet,
               t.credits AS line_credits, t.transaction_type
          FROM usage_metering u
          LEFT JOIN wallet_transactions t ON t.idempotency_key = 'usage:' || u.id
         WHERE (u.debited_credits > 0
                AND (t.id IS NULL OR t.wallet_id <> u.wallet_id
                     OR t.credits <> u.debited_credits OR t.transaction_type <> 'debit'))
            OR (u.debited_credits = 0 AND t.id IS NOT NULL)""",
    ):
        report.add(
            "usage_debit",
            f"usage event {r.id}",
            f"debited {r.debited_credits} credits from wallet {r.wallet_id}; its line: "
            f"{r.line_credits} credits ({r.transaction_type}) from wallet {r.line_wallet}",
        )
    for r in await rows(
        conn,
        """
        SELECT t.id, t.idempotency_key FROM wallet_transactions t
         WHERE (t.idempotency_key LIKE 'usage:%' AND NOT EXISTS (
                    SELECT 1 FROM usage_metering u WHERE 'usage:' || u.id = t.idempotency_key))
            OR (t.idempotency_key LIKE 'usage-debt:%' AND NOT EXISTS (
                    SELECT 1 FROM usage_debt_repayments p
                     WHERE 'usage-debt:' || p.id = t.idempotency_key))""",
    ):
        report.add("usage_debit", f"wallet line {r.id}", f"{r.idempotency_key} has no record")
    for r in await rows(
        conn,
        """
        SELECT p.id, p.wallet_id, p.credits, t.wallet_id AS line_wallet,
               t.credits AS line_credits
          FROM usage_debt_repayments p
          LEFT JOIN wallet_transactions t ON t.idempotency_key = 'usage-debt:' || p.id
         WHERE t.id IS NULL OR t.wallet_id <> p.wallet_id OR t.credits <> p.credits
            OR t.transaction_type <> 'debit'""",
    ):
        report.add(
            "usage_debit",
            f"usage debt repayment {r.id}",
            f"repaid {r.credits} credits from wallet {r.wallet_id}; its line: "
            f"{r.line_credits} credits from wallet {r.line_wallet}",
        )
    report.stats["usage_events"] = await count(conn, "SELECT count(*) FROM usage_metering")


@check("usage_aggregates")
async def usage_aggregates(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each aggregate row equals the sums of its period's events (and no period with events
    lacks a row); a month's credits are round-half-up of its milli-credits / 1000, which is
    what the running-total rating guarantees; each event was rated from the figures its
    month had before it, by the version in force when it occurred, at its tiers' price."""
    for r in await rows(
        conn,
        """
        WITH sums AS (
            SELECT wallet_id, meter, g.granularity,
                   CASE g.granularity WHEN 'month' THEN period_month ELSE period_day END
                       AS period_start,
                   sum(quantity) FILTER (WHERE outcome = 'debited') AS units,
                   sum(millicredits) FILTER (WHERE outcome = 'debited') AS millicredits,
                   sum(credits) FILTER (WHERE outcome = 'debited') AS credits,
                   sum(debited_credits) AS debited, sum(debt_credits) AS debt,
                   count(*) FILTER (WHERE outcome = 'debited') AS events,
                   count(*) FILTER (WHERE outcome = 'rejected') AS rejected
              FROM usage_metering
             CROSS JOIN (VALUES ('month'), ('day')) AS g(granularity)
             GROUP BY 1, 2, 3, 4)
        SELECT coalesce(a.wallet_id, s.wallet_id) AS wallet_id,
               coalesce(a.meter, s.meter) AS meter,
               coalesce(a.granularity, s.granularity) AS granularity,
               coalesce(a.period_start, s.period_start) AS period_start,
               a.units, a.credits, a.events, s.units AS s_units, s.credits AS s_credits,
               s.events AS s_events
          FROM usage_aggregates a
          FULL JOIN sums s ON s.wallet_id = a.wallet_id AND s.meter = a.meter
                          AND s.granularity = a.granularity AND s.period_start = a.period_start
         WHERE a.wallet_id IS NULL OR s.wallet_id IS NULL
            OR a.units <> coalesce(s.units, 0) OR a.millicredits <> coalesce(s.millicredits, 0)
            OR a.credits <> coalesce(s.credits, 0) OR a.debited_credits <> s.debited
            OR a.debt_credits <> s.debt OR a.events <> s.events
            OR a.rejected_events <> s.rejected""",
    ):
        report.add(
            "usage_aggregate",
            f"wallet {r.wallet_id} meter {r.meter} {r.granularity} {r.period_start}",
            f"the aggregate says {r.units} units, {r.credits} credits, {r.events} events; "
            f"its events add up to {r.s_units} units, {r.s_credits} credits, {r.s_events}",
        )
    for r in await rows(
        conn,
        """
        SELECT wallet_id, meter, period_start, millicredits, credits FROM usage_aggregates
         WHERE granularity = 'month' AND credits <> (2 * millicredits + 1000) / 2000""",
    ):
        report.add(
            "usage_aggregate",
            f"wallet {r.wallet_id} meter {r.meter} month {r.period_start}",
            f"{r.credits} credits charged for {r.millicredits} milli-credits",
        )
    # Events of a month, in the order they were rated, must each start where the one before
    # ended (units and milli-credits): nothing was rated twice or skipped.
    for r in await rows(
        conn,
        """
        SELECT id, wallet_id, meter, period_month FROM (
            SELECT id, wallet_id, meter, period_month, units_before, millicredits_before,
                   coalesce(sum(quantity) OVER w, 0) AS units_then,
                   coalesce(sum(millicredits) OVER w, 0) AS milli_then
              FROM usage_metering WHERE outcome = 'debited'
            WINDOW w AS (PARTITION BY wallet_id, meter, period_month
                         ORDER BY units_before, millicredits_before
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) x
         WHERE units_before <> units_then OR millicredits_before <> milli_then""",
    ):
        report.add(
            "usage_aggregate",
            f"usage event {r.id}",
            f"rated from figures its month ({r.wallet_id} {r.meter} {r.period_month}) never had",
        )

    # Each event re-rated from what it records: the version in force at its occurred_at, the
    # milli-credits its version's tiers give units_before..units_before+quantity, and the
    # credits its month's running total moved by (round half up). Without this, an event
    # rated at the wrong price whose periods were changed to match (and still round to the
    # same credits) adds up everywhere.
    for r in await rows(
        conn,
        """
        WITH tiers AS (
            SELECT v.meter, v.version,
                   (t.tier ->> 'up_to')::numeric AS up_to,
                   (t.tier ->> 'millicredits_per_unit')::numeric AS price,
                   coalesce(lag((t.tier ->> 'up_to')::numeric) OVER (
                       PARTITION BY v.meter, v.version ORDER BY t.n), 0) AS lower
              FROM usage_price_versions v,
                   jsonb_array_elements(v.tiers) WITH ORDINALITY AS t(tier, n))
        SELECT u.id, u.price_version, u.millicredits, u.credits, c.milli,
               (SELECT max(v.version) FROM usage_price_versions v
                 WHERE v.meter = u.meter AND v.effective_from <= u.occurred_at) AS in_force
          FROM usage_metering u
          CROSS JOIN LATERAL (
              SELECT coalesce(sum(greatest(0,
                         least(u.units_before + u.quantity,
                               coalesce(t.up_to, u.units_before + u.quantity))
                         - greatest(u.units_before, t.lower)) * t.price), 0)::bigint AS milli
                FROM tiers t WHERE t.meter = u.meter AND t.version = u.price_version) c
         WHERE u.millicredits <> c.milli
            OR u.credits <> (2 * (u.millicredits_before + u.millicredits) + 1000) / 2000
                            - (2 * u.millicredits_before + 1000) / 2000
            OR u.price_version IS DISTINCT FROM (
                   SELECT max(v.version) FROM usage_price_versions v
                    WHERE v.meter = u.meter AND v.effective_from <= u.occurred_at)""",
    ):
        report.add(
            "usage_rating",
            f"usage event {r.id}",
            f"recorded {r.millicredits} milli-credits and {r.credits} credits under version "
            f"{r.price_version}; its tiers give {r.milli} milli-credits, and the version in "
            f"force when it occurred is {r.in_force}",
        )


@check("usage_debts")
async def usage_debts(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per wallet and meter: incurred = Σ events' debt, repaid = Σ repayments; no event
    that owed left the debt above its price version's bound (a later version may bound it
    lower: events under it then owe nothing more, and are not held to it)."""
    for r in await rows(
        conn,
        """
        WITH owed AS (SELECT wallet_id, meter, sum(debt_credits) AS incurred
                        FROM usage_metering GROUP BY 1, 2 HAVING sum(debt_credits) > 0),
             paid AS (SELECT wallet_id, meter, sum(credits) AS repaid
                        FROM usage_debt_repayments GROUP BY 1, 2)
        SELECT coalesce(d.wallet_id, o.wallet_id) AS wallet_id,
               coalesce(d.meter, o.meter) AS meter, d.incurred_credits, d.repaid_credits,
               o.incurred, p.repaid
          FROM usage_debts d
          FULL JOIN owed o ON o.wallet_id = d.wallet_id AND o.meter = d.meter
          LEFT JOIN paid p ON p.wallet_id = coalesce(d.wallet_id, o.wallet_id)
                          AND p.meter = coalesce(d.meter, o.meter)
         WHERE coalesce(d.incurred_credits, 0) <> coalesce(o.incurred, 0)
            OR coalesce(d.repaid_credits, 0) <> coalesce(p.repaid, 0)""",
    ):
        report.add(
            "usage_debt",
            f"wallet {r.wallet_id} meter {r.meter}",
            f"the debt says {r.incurred_credits} incurred and {r.repaid_credits} repaid; "
            f"events owe {r.incurred}, repayments paid {r.repaid}",
        )
    for r in await rows(
        conn,
        """
        SELECT u.id, u.debt_after_credits, v.overdraft_limit_credits, v.on_insufficient
          FROM usage_metering u
          JOIN usage_price_versions v ON v.meter = u.meter AND v.version = u.price_version
         WHERE u.debt_credits > 0
           AND (u.debt_after_credits > v.overdraft_limit_credits
                OR v.on_insufficient <> 'overdraft')""",
    ):
        report.add(
            "usage_debt",
            f"usage event {r.id}",
            f"left {r.debt_after_credits} credits owed under a {r.on_insufficient} price "
            f"bounded at {r.overdraft_limit_credits}",
        )


CHECKS: tuple[Check, ...] = (usage_debits, usage_aggregates, usage_debts)
