"""Payouts reconciliation: every transfer we sent for a settlement against Cashfree Payouts'
own record of it (`GET /transfers?transfer_id=`): that it exists, its amount, its status
and its UTR, and that no settlement was paid by two transfers. (Payouts V2 has no list of
transfers to read, so a transfer Cashfree holds that we never recorded cannot be asked for:
each of ours is, by its id.)"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.sql import sql
from commdesk_billing.gateway.errors import CashfreeNotFound
from commdesk_billing.gateway.payout_codes import Outcome
from commdesk_billing.gateway.payout_models import Transfer
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.reconciliation.matching import Window
from commdesk_billing.modules.reconciliation.model import Kind, Observed, Source, SourceResult
from commdesk_billing.modules.reconciliation.service import observed

# Our attempt's status -> what Cashfree's transfer must have come to.
EXPECTED: dict[str, frozenset[Outcome]] = {
    "success": frozenset({Outcome.PAID}),
    "reversed": frozenset({Outcome.REVERSED}),
    "failed": frozenset({Outcome.RETRY, Outcome.NEW_DETAILS, Outcome.REVIEW}),
}


@dataclass(frozen=True)
class OurTransfer:
    transfer_id: str
    settlement_id: uuid.UUID
    amount_paise: int
    status: str  # sent | success | failed | reversed
    utr: str | None
    settlement_status: str
    settlement_utr: str | None
    updated_at: datetime


async def _ours(conn: AsyncConnection, since: datetime) -> list[OurTransfer]:
    """Every transfer that reached Cashfree (not `new`: its create may never have), made in
    the window or of a settlement still open."""
    rows = await conn.execute(
        sql("""
        SELECT t.transfer_id, t.settlement_id, t.amount_paise, t.status, t.utr, t.updated_at,
               s.status AS settlement_status, s.utr AS settlement_utr
          FROM settlement_transfers t JOIN settlements s ON s.id = t.settlement_id
         WHERE t.status <> 'new'
           AND (t.created_at >= :since OR s.status IN ('pending', 'processing'))
         ORDER BY t.created_at, t.transfer_id"""),
        {"since": since},
    )
    return [
        OurTransfer(
            r.transfer_id,
            r.settlement_id,
            int(r.amount_paise),
            r.status,
            r.utr,
            r.settlement_status,
            r.settlement_utr,
            r.updated_at,
        )
        for r in rows
    ]


def _mismatch(ours: OurTransfer, detail: str, theirs: Transfer) -> Observed:
    return observed(
        Source.payouts,
        Kind.payout_mismatch,
        f"transfer:{ours.transfer_id}",
        detail,
        refs={
            "transfer_id": ours.transfer_id,
            "settlement_id": str(ours.settlement_id),
            "ours": {"status": ours.status, "utr": ours.utr},
            "cashfree": {
                "status": theirs.status,
                "status_code": theirs.status_code,
                "utr": theirs.transfer_utr,
            },
        },
        expected_paise=ours.amount_paise,
        actual_paise=theirs.transfer_amount_paise,
    )


def compare(ours: OurTransfer, theirs: Transfer, window: Window) -> list[Observed]:
    """What differs between one transfer of ours and Cashfree's."""
    out: list[Observed] = []
    if (
        theirs.transfer_amount_paise is not None
        and theirs.transfer_amount_paise != ours.amount_paise
    ):
        out.append(
            observed(
                Source.payouts,
                Kind.amount_differs,
                f"transfer:{ours.transfer_id}",
                f"transfer {ours.transfer_id}: we sent {ours.amount_paise} paise, Cashfree "
                f"holds {theirs.transfer_amount_paise}",
                refs={"transfer_id": ours.transfer_id, "settlement_id": str(ours.settlement_id)},
                expected_paise=ours.amount_paise,
                actual_paise=theirs.transfer_amount_paise,
            )
        )
    outcome = theirs.outcome
    wanted = EXPECTED.get(ours.status)
    if wanted is not None and outcome not in wanted:
        out.append(
            _mismatch(
                ours,
                f"transfer {ours.transfer_id}: we hold it {ours.status}, Cashfree says "
                f"{theirs.status} ({theirs.status_code})",
                theirs,
            )
        )
    elif wanted is None and outcome is not Outcome.IN_FLIGHT:
        # Ours `sent`: Cashfree ended it, and no webhook nor sync told us within the grace.
        if ours.updated_at < window.now - window.grace:
            out.append(
                _mismatch(
                    ours,
                    f"transfer {ours.transfer_id}: still in flight here, Cashfree ended it "
                    f"{theirs.status} ({theirs.status_code})",
                    theirs,
                )
            )
    elif ours.status in ("success", "reversed") and ours.utr != theirs.transfer_utr:
        out.append(
            _mismatch(
                ours,
                f"transfer {ours.transfer_id}: our UTR {ours.utr}, Cashfree's "
                f"{theirs.transfer_utr}",
                theirs,
            )
        )
    elif ours.status in ("success", "reversed") and ours.settlement_utr != ours.utr:
        out.append(
            _mismatch(
                ours,
                f"settlement {ours.settlement_id} records UTR {ours.settlement_utr}, its paid "
                f"transfer {ours.transfer_id} {ours.utr}",
                theirs,
            )
        )
    return out


async def reconcile(
    engine: AsyncEngine, client: CashfreePayoutsClient, window: Window
) -> SourceResult:
    transfers = await in_transaction(engine, lambda conn: _ours(conn, window.since))
    result = SourceResult(Source.payouts)
    paid: dict[uuid.UUID, list[OurTransfer]] = defaultdict(list)
    for ours in transfers:
        result.checked += 1
        try:
            theirs = await client.get_transfer(transfer_id=ours.transfer_id)
        except CashfreeNotFound:
            result.observed.append(
                observed(
                    Source.payouts,
                    Kind.missing_at_cashfree,
                    f"transfer:{ours.transfer_id}",
                    f"transfer {ours.transfer_id} ({ours.status} here) of settlement "
                    f"{ours.settlement_id}: Cashfree Payouts has no such transfer",
                    refs={
                        "transfer_id": ours.transfer_id,
                        "settlement_id": str(ours.settlement_id),
                    },
                    expected_paise=ours.amount_paise,
                )
            )
            continue
        if theirs.outcome in (Outcome.PAID, Outcome.REVERSED):
            paid[ours.settlement_id].append(ours)
        found = compare(ours, theirs, window)
        result.observed.extend(found)
        if not found:
            result.matched += 1
    for settlement_id, paying in paid.items():
        if len(paying) > 1:
            ids = [t.transfer_id for t in paying]
            result.observed.append(
                observed(
                    Source.payouts,
                    Kind.settled_twice,
                    f"settlement:{settlement_id}",
                    f"settlement {settlement_id} was paid by {len(ids)} transfers at Cashfree: "
                    + ", ".join(ids),
                    refs={"settlement_id": str(settlement_id), "transfer_ids": ids},
                    expected_paise=paying[0].amount_paise,
                    actual_paise=sum(t.amount_paise for t in paying),
                )
            )
    return result
