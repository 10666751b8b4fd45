"""Our payments and refunds against Cashfree's reports (cashfree.md §7), as pure functions:
what is compared, what agrees, what differs only by Cashfree's fee and the GST on it (an
expected difference, counted, never a finding) and what is a finding.

Keys: a payment is matched on Cashfree's `cf_payment_id` (the event id of its PAYMENT row),
else on our order id; a refund on Cashfree's `cf_refund_id` (its REFUND row's event id), else
on our refund id (`refund_details.refund_id`). Other event types (disputes, chargebacks,
adjustments) are not ours to hold and are not compared.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from commdesk_billing.gateway.split_models import ReconRow
from commdesk_billing.modules.reconciliation.model import Kind, Observed, Source, SourceResult
from commdesk_billing.modules.reconciliation.service import observed

GST_ON_FEE_PERCENT = 18  # Cashfree's service tax on its service charge
GST_TOLERANCE_PAISE = 1  # rounding of the tax to the paisa, whichever way Cashfree rounds


@dataclass(frozen=True)
class OurPayment:
    order_id: str
    cf_payment_id: str | None
    amount_paise: int
    status: str
    paid_at: datetime
    # A PG order's (looked for in the reports); False: a mandate's charge, compared only
    # when the reports name it.
    on_order: bool = True


@dataclass(frozen=True)
class OurRefund:
    refund_ref: str
    cf_refund_id: str | None
    order_id: str
    amount_paise: int
    processed_at: datetime
    on_order: bool = True


@dataclass(frozen=True)
class Window:
    now: datetime
    since: datetime  # ours older than this are not looked for at Cashfree
    grace: timedelta  # younger than now - grace: not compared yet
    settle_after: timedelta  # T+N


def _rupees(paise: int | None) -> str:
    return "none" if paise is None else f"₹{paise // 100}.{paise % 100:02d}"


def _ok_event(row: ReconRow) -> bool:
    status = row.event_details.event_status
    return status is None or status == "SUCCESS"


def _settlements_of(settled: list[ReconRow]) -> dict[str, set[str]]:
    """event id -> the settlements that paid it (a settlement's own report lists its rows)."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in settled:
        if row.settlement_details and row.settlement_details.cf_settlement_id:
            out[row.event_details.event_id].add(str(row.settlement_details.cf_settlement_id))
    return out


def match(
    payments: list[OurPayment],
    refunds: list[OurRefund],
    events: list[ReconRow],
    settled: list[ReconRow],
    window: Window,
) -> SourceResult:
    """Compare; `events`: `/recon` rows over the window, `settled`: `/settlement/recon` rows
    of the settlements made in it."""
    result = SourceResult(Source.gateway)
    paid_by = _settlements_of(settled)
    settled_in_report = {
        row.event_details.event_id
        for row in events
        if row.settlement_details and row.settlement_details.cf_settlement_id
    }
    settled_ids = settled_in_report | set(paid_by)
    young = window.now - window.grace

    pay_events = [r for r in events if r.event_details.event_type == "PAYMENT" and _ok_event(r)]
    ref_events = [r for r in events if r.event_details.event_type == "REFUND" and _ok_event(r)]

    # --- payments ----------------------------------------------------------------------
    by_cf = {p.cf_payment_id: p for p in payments if p.cf_payment_id}
    by_order = {p.order_id: p for p in payments}
    seen_ours: set[str] = set()
    for row in pay_events:
        event_id = row.event_details.event_id
        order_id = row.order_details.order_id if row.order_details else None
        ours = by_cf.get(event_id)
        if ours is None and order_id:
            # Ours without Cashfree's payment id is matched on its order; ours naming another
            # payment id means this is a second capture on the order, which we do not hold.
            candidate = by_order.get(order_id)
            if candidate is not None and candidate.cf_payment_id is None:
                ours = candidate
        if ours is None or ours.order_id in seen_ours:
            if row.event_details.event_time and row.event_details.event_time > young:
                continue  # our record of it may still be on its way (a webhook, the sync)
            result.checked += 1
            result.observed.append(
                observed(
                    Source.gateway,
                    Kind.missing_here,
                    f"payment:{event_id}",
                    f"Cashfree reports payment {event_id} of order {order_id} for "
                    f"{_rupees(row.event_details.event_amount_paise)}; we hold no captured "
                    "payment for it",
                    refs={"cf_payment_id": event_id, "order_id": order_id},
                    actual_paise=row.event_details.event_amount_paise,
                )
            )
            continue
        seen_ours.add(ours.order_id)
        result.checked += 1
        found = _payment_findings(ours, row, event_id in settled_ids, paid_by.get(event_id), window)
        result.observed.extend(found)
        if not found:
            result.matched += 1
            fee = (row.event_details.event_service_charge_paise or 0) + (
                row.event_details.event_service_tax_paise or 0
            )
            if fee:
                result.explained_differences += 1
    for p in payments:
        if p.order_id in seen_ours or not p.on_order:
            continue
        if p.paid_at < window.since or p.paid_at > young:
            continue
        result.checked += 1
        result.observed.append(
            observed(
                Source.gateway,
                Kind.missing_at_cashfree,
                f"payment:{p.order_id}",
                f"we captured {_rupees(p.amount_paise)} on order {p.order_id} "
                f"({p.status}, payment {p.cf_payment_id}); Cashfree's reports do not have it",
                refs={"order_id": p.order_id, "cf_payment_id": p.cf_payment_id},
                expected_paise=p.amount_paise,
            )
        )

    # --- refunds -----------------------------------------------------------------------
    r_by_cf = {r.cf_refund_id: r for r in refunds if r.cf_refund_id}
    r_by_ref = {r.refund_ref: r for r in refunds}
    seen_refunds: set[str] = set()
    for row in ref_events:
        event_id = row.event_details.event_id
        ref = row.refund_details.refund_id if row.refund_details else None
        ours_r = r_by_cf.get(event_id) or (r_by_ref.get(ref) if ref else None)
        if ours_r is None or ours_r.refund_ref in seen_refunds:
            if row.event_details.event_time and row.event_details.event_time > young:
                continue
            result.checked += 1
            result.observed.append(
                observed(
                    Source.gateway,
                    Kind.missing_here,
                    f"refund:{event_id}",
                    f"Cashfree reports refund {event_id} ({ref}) of "
                    f"{_rupees(row.event_details.event_amount_paise)}; we hold no successful "
                    "refund for it",
                    refs={"cf_refund_id": event_id, "refund_id": ref},
                    actual_paise=row.event_details.event_amount_paise,
                )
            )
            continue
        seen_refunds.add(ours_r.refund_ref)
        result.checked += 1
        found = _refund_findings(ours_r, row, paid_by.get(event_id))
        result.observed.extend(found)
        if not found:
            result.matched += 1
    for r in refunds:
        if r.refund_ref in seen_refunds or not r.on_order:
            continue
        if r.processed_at < window.since or r.processed_at > young:
            continue
        result.checked += 1
        result.observed.append(
            observed(
                Source.gateway,
                Kind.missing_at_cashfree,
                f"refund:{r.refund_ref}",
                f"we refunded {_rupees(r.amount_paise)} on order {r.order_id} (refund "
                f"{r.refund_ref}, Cashfree's {r.cf_refund_id}); Cashfree's reports do not have it",
                refs={"refund_id": r.refund_ref, "cf_refund_id": r.cf_refund_id},
                expected_paise=r.amount_paise,
            )
        )
    return result


def _twice(kind: str, event_id: str, settlements: set[str] | None, amount: int | None) -> Observed:
    ids = sorted(settlements or ())
    return observed(
        Source.gateway,
        Kind.settled_twice,
        f"{kind}:{event_id}",
        f"Cashfree's settlements {', '.join(ids)} each include {kind} {event_id}",
        refs={"event_id": event_id, "cf_settlement_ids": ids},
        expected_paise=amount,
        actual_paise=None if amount is None else amount * len(ids),
    )


def _payment_findings(
    ours: OurPayment,
    row: ReconRow,
    settled: bool,
    settlements: set[str] | None,
    window: Window,
) -> list[Observed]:
    e = row.event_details
    refs = {"order_id": ours.order_id, "cf_payment_id": e.event_id}
    out: list[Observed] = []
    if e.event_amount_paise != ours.amount_paise:
        out.append(
            observed(
                Source.gateway,
                Kind.amount_differs,
                f"payment:{ours.order_id}",
                f"order {ours.order_id}: we captured {_rupees(ours.amount_paise)}, Cashfree "
                f"reports {_rupees(e.event_amount_paise)}",
                refs=refs,
                expected_paise=ours.amount_paise,
                actual_paise=e.event_amount_paise,
            )
        )
    charge = e.event_service_charge_paise or 0
    tax = e.event_service_tax_paise or 0
    if e.event_settlement_amount_paise is not None:
        net = e.event_amount_paise - charge - tax
        if e.event_settlement_amount_paise != net:
            out.append(
                observed(
                    Source.gateway,
                    Kind.amount_differs,
                    f"payment:{ours.order_id}:net",
                    f"order {ours.order_id}: {_rupees(e.event_amount_paise)} less Cashfree's "
                    f"fee {_rupees(charge)} and GST on it {_rupees(tax)} is {_rupees(net)}, "
                    f"but it settles {_rupees(e.event_settlement_amount_paise)}",
                    refs=refs,
                    expected_paise=net,
                    actual_paise=e.event_settlement_amount_paise,
                )
            )
    if abs(tax - charge * GST_ON_FEE_PERCENT // 100) > GST_TOLERANCE_PAISE:
        out.append(
            observed(
                Source.gateway,
                Kind.amount_differs,
                f"payment:{ours.order_id}:gst_on_fee",
                f"order {ours.order_id}: GST on Cashfree's fee {_rupees(charge)} should be "
                f"{GST_ON_FEE_PERCENT}% ({_rupees(charge * GST_ON_FEE_PERCENT // 100)}), "
                f"Cashfree charged {_rupees(tax)}",
                refs=refs,
                expected_paise=charge * GST_ON_FEE_PERCENT // 100,
                actual_paise=tax,
            )
        )
    if settlements and len(settlements) > 1:
        out.append(_twice("payment", e.event_id, settlements, e.event_settlement_amount_paise))
    if not settled and ours.paid_at < window.now - window.settle_after:
        days = window.settle_after.days
        out.append(
            observed(
                Source.gateway,
                Kind.unsettled,
                f"payment:{ours.order_id}",
                f"order {ours.order_id} was captured {ours.paid_at.isoformat()} and Cashfree "
                f"has not settled it past T+{days}",
                refs={**refs, "paid_at": ours.paid_at.isoformat()},
                expected_paise=e.event_settlement_amount_paise,
            )
        )
    return out


def _refund_findings(
    ours: OurRefund, row: ReconRow, settlements: set[str] | None
) -> list[Observed]:
    e = row.event_details
    out: list[Observed] = []
    if e.event_amount_paise != ours.amount_paise:
        out.append(
            observed(
                Source.gateway,
                Kind.amount_differs,
                f"refund:{ours.refund_ref}",
                f"refund {ours.refund_ref} on order {ours.order_id}: we refunded "
                f"{_rupees(ours.amount_paise)}, Cashfree reports {_rupees(e.event_amount_paise)}",
                refs={"refund_id": ours.refund_ref, "cf_refund_id": e.event_id},
                expected_paise=ours.amount_paise,
                actual_paise=e.event_amount_paise,
            )
        )
    if settlements and len(settlements) > 1:
        out.append(_twice("refund", e.event_id, settlements, e.event_settlement_amount_paise))
    return out
