"""The subscriptions' checks for `ledger verify` (DESIGN §12).

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import VerifyReport, check, count, rows


@check("subscription_charges")
async def subscription_charges(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every paid period has exactly one period charge, of the period's price, and no
    unpaid period has one; every charge's hold is on the subscription's wallet and was
    captured for exactly the charge's credits."""
    for r in await rows(
        conn,
        """
        SELECT p.subscription_id, p.number, p.status, p.price_credits,
               count(c.id) AS charges, coalesce(sum(c.credits), 0) AS credits
          FROM subscription_periods p
          LEFT JOIN subscription_charges c
            ON c.subscription_id = p.subscription_id AND c.period_number = p.number
           AND c.kind = 'period'
         WHERE p.price_credits IS NOT NULL
         GROUP BY p.subscription_id, p.number, p.status, p.price_credits
        HAVING (p.status = 'paid' AND (count(c.id) <> 1 OR sum(c.credits) <> p.price_credits))
            OR (p.status <> 'paid' AND count(c.id) <> 0)""",
    ):
        report.add(
            "subscription_period_charge",
            f"subscription {r.subscription_id} period {r.number}",
            f"{r.status} at {r.price_credits} credits has {r.charges} period charges of "
            f"{r.credits} credits",
        )
    for r in await rows(
        conn,
        """
        SELECT c.id, c.subscription_id, c.credits, h.status, h.captured_credits,
               h.wallet_id = s.wallet_id AS same_wallet
          FROM subscription_charges c
          JOIN subscriptions s ON s.id = c.subscription_id
          LEFT JOIN wallet_holds h ON h.id = c.hold_id
         WHERE h.id IS NULL OR h.status <> 'captured' OR h.captured_credits <> c.credits
            OR h.wallet_id <> s.wallet_id""",
    ):
        report.add(
            "subscription_charge_hold",
            f"subscription {r.subscription_id} charge {r.id}",
            f"charges {r.credits} credits; its hold is {r.status or 'missing'} with "
            f"{r.captured_credits} captured (same wallet: {r.same_wallet})",
        )
    report.stats["subscription_charges"] = await count(
        conn, "SELECT count(*) FROM subscription_charges"
    )


@check("subscription_periods")
async def subscription_periods(conn: AsyncConnection, report: VerifyReport) -> None:
    """No two paid periods of a subscription overlap, a subscription's current period is a
    paid period with the same bounds, and no period after it is paid."""
    for r in await rows(
        conn,
        """
        SELECT a.subscription_id, a.number AS a, b.number AS b
          FROM subscription_periods a
          JOIN subscription_periods b
            ON b.subscription_id = a.subscription_id AND b.number > a.number
         WHERE a.status = 'paid' AND b.status = 'paid'
           AND tstzrange(a.period_start, a.period_end) && tstzrange(b.period_start, b.period_end)
        """,
    ):
        report.add(
            "subscription_periods_overlap",
            f"subscription {r.subscription_id}",
            f"paid periods {r.a} and {r.b} overlap",
        )
    for r in await rows(
        conn,
        """
        SELECT s.id, s.current_period, p.status
          FROM subscriptions s
          LEFT JOIN subscription_periods p
            ON p.subscription_id = s.id AND p.number = s.current_period
         WHERE (p.subscription_id IS NULL OR p.status <> 'paid'
                OR p.period_start <> s.current_period_start
                OR p.period_end <> s.current_period_end)
           -- An INR subscription whose first period was never paid (pending, or ended
           -- so) has no paid current period.
           AND NOT (s.mandate_id IS NOT NULL AND s.current_period = 1
                    AND p.paid_at IS NULL)""",
    ):
        report.add(
            "subscription_current_period",
            f"subscription {r.id}",
            f"current period {r.current_period} is {r.status or 'missing'} or has other bounds",
        )
    for r in await rows(
        conn,
        """
        SELECT p.subscription_id, p.number, s.current_period
          FROM subscription_periods p
          JOIN subscriptions s ON s.id = p.subscription_id
         WHERE p.number > s.current_period AND p.status = 'paid'""",
    ):
        # Paid periods are made current in the transaction that charges them: one ahead of
        # the current period means the member paid for time the subscription never gave.
        report.add(
            "subscription_period_ahead",
            f"subscription {r.subscription_id} period {r.number}",
            f"paid, but the subscription is on period {r.current_period}",
        )


@check("subscription_inr_payments")
async def subscription_inr_payments(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every paid INR period has exactly one paid charge on the mandate, whose payment is a
    CREDITED `subscription` payment on the mandate channel of exactly the period's price;
    an unpaid INR period has none; and every CREDITED subscription payment is its period's
    paid charge or marked `unapplied` (money no period took, for finance to refund)."""
    for r in await rows(
        conn,
        """
        SELECT p.subscription_id, p.number, p.status, p.price_paise,
               count(c.attempt) AS paid, coalesce(sum(y.amount_paise), 0) AS paise,
               count(y.id) FILTER (WHERE y.status = 'CREDITED' AND y.kind = 'subscription'
                                   AND y.channel = 'mandate') AS credited
          FROM subscription_periods p
          LEFT JOIN subscription_mandate_charges c
            ON c.subscription_id = p.subscription_id AND c.period_number = p.number
           AND c.status = 'paid'
          LEFT JOIN payments y ON y.id = c.payment_id
         WHERE p.price_paise IS NOT NULL
         GROUP BY p.subscription_id, p.number, p.status, p.price_paise
        HAVING (p.status = 'paid' AND (count(c.attempt) <> 1 OR count(y.id) FILTER (
                    WHERE y.status = 'CREDITED' AND y.kind = 'subscription'
                      AND y.channel = 'mandate') <> 1
                OR coalesce(sum(y.amount_paise), 0) <> p.price_paise))
            OR (p.status <> 'paid' AND count(c.attempt) <> 0)""",
    ):
        report.add(
            "subscription_inr_period_payment",
            f"subscription {r.subscription_id} period {r.number}",
            f"{r.status} at {r.price_paise} paise has {r.paid} paid charges "
            f"({r.credited} credited payments) of {r.paise} paise",
        )
    for r in await rows(
        conn,
        """
        SELECT y.id, c.subscription_id, c.period_number, c.status
          FROM payments y
          LEFT JOIN subscription_mandate_charges c ON c.payment_id = y.id
         WHERE y.kind = 'subscription' AND y.status = 'CREDITED'
           AND (c.payment_id IS NULL OR c.status NOT IN ('paid', 'unapplied'))
           -- or an upgrade's prorated charge, applied or to refund
           AND NOT EXISTS (SELECT 1 FROM subscription_plan_changes pc
                            WHERE pc.payment_id = y.id AND pc.status IN ('applied', 'unapplied'))
        """,
    ):
        report.add(
            "subscription_payment_unmatched",
            f"payment {r.id}",
            f"credited, but its charge (subscription {r.subscription_id} period "
            f"{r.period_number}) is {r.status or 'missing'}",
        )


@check("subscription_plan_changes")
async def subscription_plan_changes(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every applied (or unapplied) INR plan change was paid by exactly one CREDITED
    `subscription` payment on the mandate of exactly its prorated price, posted as
    `subscription.paid`; no open or failed change has a credited payment; an INR
    subscription is on its current period's plan or on one a paid change moved it to."""
    for r in await rows(
        conn,
        """
        SELECT * FROM (
            SELECT c.id, c.subscription_id, c.status, c.price_paise, y.status AS paid,
                   y.amount_paise, y.kind, y.channel,
                   -- (':' apart: a colon before a word would read as a bound parameter)
                   EXISTS (SELECT 1 FROM ledger_journals j
                            WHERE j.idempotency_key = 'payment:' || y.id || ':' || 'inr'
                              AND j.kind = 'subscription.paid') AS posted
              FROM subscription_plan_changes c
              LEFT JOIN payments y ON y.id = c.payment_id) x
         WHERE (status IN ('applied', 'unapplied')
                AND (paid IS DISTINCT FROM 'CREDITED' OR amount_paise <> price_paise
                     OR kind <> 'subscription' OR channel <> 'mandate' OR NOT posted))
            OR (status NOT IN ('applied', 'unapplied') AND paid = 'CREDITED')""",
    ):
        report.add(
            "subscription_plan_change_payment",
            f"subscription {r.subscription_id} plan change {r.id}",
            f"{r.status} at {r.price_paise} paise; its payment is {r.paid or 'missing'} "
            f"({r.kind}, {r.channel}) of {r.amount_paise} paise, posted: {r.posted}",
        )
    for r in await rows(
        conn,
        """
        SELECT s.id, s.current_period, s.plan_code, s.plan_version,
               p.plan_code AS period_plan, p.plan_version AS period_version
          FROM subscriptions s
          JOIN subscription_periods p
            ON p.subscription_id = s.id AND p.number = s.current_period
         WHERE s.mandate_id IS NOT NULL AND p.status = 'paid'
           AND (s.plan_code, s.plan_version) <> (p.plan_code, p.plan_version)
           -- On the plan its period was paid on, or on one an applied (paid) change of this
           -- period moved it to, or a free upgrade's (under a rupee, logged, no payment).
           AND NOT EXISTS (SELECT 1 FROM subscription_plan_changes c
                            WHERE c.subscription_id = s.id AND c.status = 'applied'
                              AND c.period_number = s.current_period
                              AND (c.to_plan_code, c.to_plan_version)
                                  = (s.plan_code, s.plan_version))
           AND NOT EXISTS (SELECT 1 FROM billing_events e
                            WHERE e.event_type = 'subscription.plan_changed'
                              AND e.data->>'subscription_id' = s.id::text
                              AND e.data->>'price_paise' = '0'
                              AND e.data->>'period' = s.current_period::text
                              AND e.data->>'to_plan'
                                  = s.plan_code || ':' || s.plan_version::text)""",
    ):
        report.add(
            "subscription_plan_unpaid",
            f"subscription {r.id}",
            f"on {r.plan_code}:{r.plan_version} in period {r.current_period}, paid on "
            f"{r.period_plan}:{r.period_version}, with no applied change to it",
        )
    report.stats["subscription_plan_changes"] = await count(
        conn, "SELECT count(*) FROM subscription_plan_changes"
    )


CHECKS = (
    subscription_charges,
    subscription_periods,
    subscription_inr_payments,
    subscription_plan_changes,
)
