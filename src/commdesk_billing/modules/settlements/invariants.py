"""The settlements' checks for `ledger verify` (DESIGN §11).

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows
from commdesk_billing.money import half_up

_SETTLEMENTS = """
    SELECT s.id, s.payable_code, s.status, s.gross_paise, s.tds_paise, s.tcs_paise,
           s.fee_paise, s.net_paise, s.payable_paise, s.reserves_held_paise, s.reserve_bps,
           s.reserve_paise, s.tds_bps, s.tcs_bps, s.utr, s.journal_id, a.id AS payable_id
      FROM settlements s LEFT JOIN ledger_accounts a ON a.code = s.payable_code
"""

# Which journals a settlement in each status has, by step.
_STEPS = {
    "pending": ("created",),
    "processing": ("created",),
    "paid": ("created", "paid"),
    "failed": ("created", "failed"),
    "reversed": ("created", "paid", "reversed"),
}


def _expected(s: Any, step: str) -> dict[Any, int]:
    """The legs of one step's journal, per account (signed), zero legs left out."""
    created = {
        s.payable_id: s.gross_paise,
        House.TDS_PAYABLE: -s.tds_paise,
        House.TCS_PAYABLE: -s.tcs_paise,
        House.PAYOUT_FEE_REVENUE: -s.fee_paise,
        House.PAYOUTS_IN_TRANSIT: -s.net_paise,
    }
    legs: dict[Any, int]
    if step == "created":
        legs = created
    elif step == "paid":
        legs = {House.PAYOUTS_IN_TRANSIT: s.net_paise, House.PAYOUTS_CASH: -s.net_paise}
    elif step == "failed":
        legs = {k: -v for k, v in created.items()}
    else:  # reversed: created and paid undone together
        legs = {k: -v for k, v in created.items() if k != House.PAYOUTS_IN_TRANSIT}
        legs[House.PAYOUTS_CASH] = s.net_paise
    return {k: v for k, v in legs.items() if v}


@check("settlement_journals")
async def settlement_journals(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each settlement's figures follow from its rates, and its journals are exactly the
    ones its status says (created; paid; failed; reversed), each with the legs its row
    gives, nothing else; no settlement journal without its row."""
    settlements = {s.id: s for s in await rows(conn, _SETTLEMENTS)}
    posted: dict[Any, dict[str, dict[Any, int]]] = defaultdict(lambda: defaultdict(dict))
    for leg in await rows(
        conn,
        """
        SELECT CAST(j.metadata->>'settlement_id' AS uuid) AS sid, j.id AS journal_id,
               j.kind, e.account_id, sum(e.amount) AS amount
          FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
         WHERE j.kind LIKE 'settlement.%'
         GROUP BY j.id, j.kind, e.account_id""",
    ):
        step = leg.kind.removeprefix("settlement.")
        legs = posted[leg.sid][step]
        legs[leg.account_id] = legs.get(leg.account_id, 0) + int(leg.amount)
        if step == "created":
            legs["journal_id"] = leg.journal_id
    for sid in sorted(set(posted) - set(settlements), key=str):
        report.add("settlement_journal", f"settlement {sid}", "journals with no settlement row")
    for s in settlements.values():
        subject = f"settlement {s.id} ({s.payable_code})"
        available = s.payable_paise - s.reserves_held_paise
        want = (
            half_up(available * s.reserve_bps, 10_000),
            half_up(s.gross_paise * s.tds_bps, 10_000),
            half_up(s.gross_paise * s.tcs_bps, 10_000),
        )
        if want != (s.reserve_paise, s.tds_paise, s.tcs_paise):
            report.add(
                "settlement_figures",
                subject,
                f"reserve, TDS, TCS are {s.reserve_paise}, {s.tds_paise}, {s.tcs_paise}; "
                f"its rates give {want}",
            )
        steps = posted.get(s.id, {})
        if set(steps) != set(_STEPS[s.status]):
            report.add(
                "settlement_journal",
                subject,
                f"status {s.status} has journals {sorted(steps)}; wants {_STEPS[s.status]}",
            )
        for step, legs in steps.items():
            got = {k: v for k, v in legs.items() if k != "journal_id" and v}
            if got != _expected(s, step):
                report.add(
                    "settlement_journal",
                    subject,
                    f"its {step} journal moves {sorted((str(k), v) for k, v in got.items())}; "
                    f"the row says otherwise",
                )
            if step == "created" and legs.get("journal_id") != s.journal_id:
                report.add("settlement_journal", subject, "its row names another journal")
    report.stats["settlements"] = len(settlements)


@check("settlement_payables")
async def settlement_payables(conn: AsyncConnection, report: VerifyReport) -> None:
    """For every payee settled from: Σ settled (gross of settlements not failed or
    reversed) + its payable = Σ earned (what anything but settlements credited it)."""
    for r in await rows(
        conn,
        """
        WITH settled AS (
            SELECT payable_code, sum(gross_paise) FILTER (
                       WHERE status NOT IN ('failed', 'reversed')) AS paise
              FROM settlements GROUP BY payable_code)
        SELECT a.code, coalesce(st.paise, 0) AS settled,
               coalesce(-sum(e.amount), 0) AS payable,
               coalesce(-sum(e.amount) FILTER (WHERE j.kind NOT LIKE 'settlement.%'), 0)
                   AS earned
          FROM settled st
          JOIN ledger_accounts a ON a.code = st.payable_code
          LEFT JOIN ledger_entries e ON e.account_id = a.id
          LEFT JOIN ledger_journals j ON j.id = e.journal_id
         GROUP BY a.code, st.paise""",
    ):
        if int(r.settled) + int(r.payable) != int(r.earned):
            report.add(
                "settlement_payable",
                r.code,
                f"settled {r.settled} + payable {r.payable} paise; earned {r.earned}",
            )


@check("settlement_transfers")
async def settlement_transfers(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every paid settlement has exactly one successful transfer, of its net amount, with
    its UTR (a reversed one: that transfer, reversed); no other settlement has one; one in
    flight has exactly one open attempt; and payouts in transit holds Σ net of the
    settlements in flight."""
    for r in await rows(
        conn,
        """
        SELECT s.id, s.status, s.net_paise, s.utr,
               count(t.id) FILTER (WHERE t.status IN ('success', 'reversed')) AS paid,
               count(t.id) FILTER (WHERE t.status IN ('success', 'reversed')
                                   AND t.amount_paise = s.net_paise
                                   -- A reversal first seen without a UTR records ''
                                   -- on the settlement (which needs one) and none on
                                   -- its transfer: the same absence.
                                   AND coalesce(t.utr, '') = coalesce(s.utr, '')
                                   AND (t.status = 'reversed') = (s.status = 'reversed'))
                   AS matching,
               count(t.id) FILTER (WHERE t.status IN ('new', 'sent')) AS open
          FROM settlements s LEFT JOIN settlement_transfers t ON t.settlement_id = s.id
         GROUP BY s.id""",
    ):
        paid_like = r.status in ("paid", "reversed")
        in_flight = r.status in ("pending", "processing")
        if (paid_like and (r.paid, r.matching) != (1, 1)) or (not paid_like and r.paid):
            report.add(
                "settlement_transfer",
                f"settlement {r.id}",
                f"status {r.status} of {r.net_paise} paise has {r.paid} successful transfers, "
                f"{r.matching} of its amount and UTR",
            )
        if in_flight != (r.open == 1) or r.open > 1:
            report.add(
                "settlement_transfer",
                f"settlement {r.id}",
                f"status {r.status} has {r.open} transfers in flight",
            )
    [t] = await rows(
        conn,
        """
        SELECT (SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE account_id = :a)
                   AS held,
               (SELECT coalesce(sum(net_paise), 0) FROM settlements
                 WHERE status IN ('pending', 'processing')) AS in_flight""",
        {"a": House.PAYOUTS_IN_TRANSIT},
    )
    if int(t.held) != int(t.in_flight):
        report.add(
            "payouts_in_transit",
            "inr:payouts_in_transit",
            f"holds {t.held} paise; settlements in flight say {t.in_flight}",
        )


@check("settlement_targets")
async def settlement_targets(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every settlement pays its own payee: its account is a version of its payee's account,
    verified and out of its cooling-off when the settlement was made, the beneficiary is
    that version's and the mode its method's, and the payable it took from is its payee's.
    (A settlement row is frozen at its insert; this is what the insert had to be.)"""
    for r in await rows(
        conn,
        """
        SELECT s.id, s.created_at, s.beneficiary_id, s.transfer_mode, s.payable_code,
               concat_ws(CAST(':' AS text), p.kind, p.subject_id, 'payable') AS payee_payable,
               a.id AS account_id, a.payee_id AS account_payee, s.payee_id,
               a.beneficiary_id AS account_beneficiary, a.verification_status,
               a.payouts_blocked_until, a.method
          FROM settlements s
          JOIN payees p ON p.id = s.payee_id
          LEFT JOIN payout_accounts a ON a.id = s.account_id""",
    ):
        wrong = []
        if r.account_id is None or r.account_payee != r.payee_id:
            wrong.append("its account is not its payee's")
        else:
            if r.account_beneficiary != r.beneficiary_id:
                wrong.append("its beneficiary is not its account's")
            if r.verification_status != "verified":
                wrong.append("its account is not verified")
            if r.payouts_blocked_until > r.created_at:
                wrong.append("it was made in its account's cooling-off")
            if r.transfer_mode != ("upi" if r.method == "upi" else "banktransfer"):
                wrong.append("its transfer mode is not its account's method")
        if r.payable_code != r.payee_payable:
            wrong.append("it took from another payable than its payee's")
        if wrong:
            report.add("settlement_target", f"settlement {r.id}", "; ".join(wrong))


CHECKS: tuple[Check, ...] = (
    settlement_journals,
    settlement_payables,
    settlement_transfers,
    settlement_targets,
)
