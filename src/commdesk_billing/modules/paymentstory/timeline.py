"""A payment's story as one list in time order, each entry typed with a small vocabulary
that does not change (new facts get new types; a type's meaning never moves):

| type | what | `ref` |
|---|---|---|
| `order_created` | the payment was written (its order is opened at Cashfree next) | payment id |
| `status_changed` | the payment moved state (`data.from`, `data.to`) | payment id |
| `attempt` | Cashfree's payment attempt on the order, as last recorded | Cashfree payment id |
| `webhook` | a webhook Cashfree delivered about the order | our webhook id |
| `credits` | a wallet statement line the payment or a refund wrote | statement line id |
| `refund_requested` | a refund was asked for | refund id |
| `refund_status_changed` | a refund ended (`data.to`: SUCCESS, FAILED, CANCELLED, …) | refund id |
| `invoice` | the tax invoice was issued | invoice id |
| `credit_note` | a credit note for a refund was issued | invoice id |

Entries at the same instant keep the order of the table above. Cashfree stamps an attempt
to the whole second (in IST), so its `at` may read a fraction of a second before the order
was opened here; it is still placed after the order's opening (its `at` is shown as
Cashfree gave it). A buyer's view leaves out
what is staff's (who asked for a refund when staff did, the reasons written to state moves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from commdesk_billing.modules.paymentstory.reads import PaymentStory


class EntryType(StrEnum):
    order_created = "order_created"
    status_changed = "status_changed"
    attempt = "attempt"
    webhook = "webhook"
    credits = "credits"
    refund_requested = "refund_requested"
    refund_status_changed = "refund_status_changed"
    invoice = "invoice"
    credit_note = "credit_note"


_RANK = {t: i for i, t in enumerate(EntryType)}


@dataclass(frozen=True)
class Entry:
    type: EntryType
    at: datetime
    summary: str
    ref: str | None
    data: dict[str, Any]
    placed: datetime | None = None  # where it sorts, when not at `at`

    @property
    def sort_at(self) -> datetime:
        return self.placed or self.at


def _events(story: PaymentStory, staff: bool) -> list[Entry]:
    p = story.payment
    out: list[Entry] = []
    for e in story.events:
        kind: str = e["event_type"]
        data = e["data"] or {}
        if e["invoice_id"] is not None or kind == "refund.requested":
            continue  # told by the documents and the refunds themselves
        if kind == "payment.created":
            out.append(
                Entry(
                    EntryType.order_created,
                    e["occurred_at"],
                    f"order {p.order_id} created for {p.amount_paise} paise",
                    str(p.id),
                    {"amount_paise": p.amount_paise, "kind": data.get("kind", p.kind)},
                )
            )
        elif kind.startswith("payment."):
            to = kind.removeprefix("payment.").upper()
            moved: dict[str, Any] = {"from": data.get("from"), "to": to}
            if staff:
                moved["reason"] = data.get("reason")
            out.append(
                Entry(
                    EntryType.status_changed,
                    e["occurred_at"],
                    f"{data.get('from')} → {to}",
                    str(p.id),
                    moved,
                )
            )
        elif kind.startswith("refund.") and e["refund_id"] is not None:
            # `refund.succeeded` is written for a refund moving to SUCCESS; every other end
            # is `refund.<status>`: `to` is the refund's own status, as its API shows it.
            ended = kind.removeprefix("refund.")
            to = "SUCCESS" if ended == "succeeded" else ended.upper()
            out.append(
                Entry(
                    EntryType.refund_status_changed,
                    e["occurred_at"],
                    f"refund {to.lower()}",
                    str(e["refund_id"]),
                    {"to": to, "amount_paise": e["amount_paise"]},
                )
            )
    return out


def _opened_at(story: PaymentStory) -> datetime:
    """When the order was opened (its first move to ACTIVE), else written: no attempt on it
    can come earlier."""
    for e in story.events:
        if e["event_type"] == "payment.active":
            opened: datetime = e["occurred_at"]
            return opened
    return story.payment.created_at


def _attempts(story: PaymentStory) -> list[Entry]:
    floor = _opened_at(story)
    out: list[Entry] = []
    for a in story.attempts:
        at = a["attempted_at"] or a["completed_at"] or story.payment.created_at
        out.append(
            Entry(
                EntryType.attempt,
                at,
                f"{a['payment_group'] or 'payment'} attempt: {a['status']}",
                a["cf_payment_id"],
                {
                    "status": a["status"],
                    "amount_paise": a["amount_paise"],
                    "payment_group": a["payment_group"],
                    "payment_method": a["payment_method"],
                    "message": a["payment_message"] or a["error_description"],
                    "error_code": a["error_code"],
                    "completed_at": a["completed_at"],
                },
                placed=max(at, floor),
            )
        )
    return out


def _webhooks(story: PaymentStory) -> list[Entry]:
    return [
        Entry(
            EntryType.webhook,
            w["received_at"],
            f"webhook {w['event_type']}" + (f" ({w['status']})" if w["status"] else ""),
            str(w["id"]),
            {
                "event_type": w["event_type"],
                "status": w["status"],
                "outcome": w["outcome"],
                "duplicates": w["duplicates"],
            },
        )
        for w in story.webhooks
    ]


def _credits(story: PaymentStory) -> list[Entry]:
    return [
        Entry(
            EntryType.credits,
            line.created_at,
            f"{line.transaction_type.value} {line.credits} credits "
            f"(balance {line.balance_before} → {line.balance_after})",
            str(line.id),
            {
                "transaction_type": line.transaction_type.value,
                "credits": line.credits,
                "balance_before": line.balance_before,
                "balance_after": line.balance_after,
                "seq": line.seq,
            },
        )
        for line in story.statement
    ]


def _refunds(story: PaymentStory, staff: bool) -> list[Entry]:
    out: list[Entry] = []
    for r in story.refunds:
        by = r.requested_by if staff or r.requested_role == "member" else "commdesk"
        out.append(
            Entry(
                EntryType.refund_requested,
                r.created_at,
                f"refund of {r.amount_paise} paise requested",
                str(r.id),
                {
                    "refund_ref": r.refund_ref,
                    "amount_paise": r.amount_paise,
                    "credits": r.base_credits + r.bonus_credits,
                    "reason": r.reason,
                    "requested_by": by,
                    "status": r.status.value,
                },
            )
        )
    return out


def _documents(story: PaymentStory) -> list[Entry]:
    out: list[Entry] = []
    for d in story.documents:
        note = d.kind.value == "credit_note"
        out.append(
            Entry(
                EntryType.credit_note if note else EntryType.invoice,
                d.issued_at,
                f"{'credit note' if note else 'tax invoice'} {d.number}",
                str(d.id),
                {
                    "number": d.number,
                    "refund_id": str(d.refund_id) if d.refund_id else None,
                    "taxable_paise": d.taxable_paise,
                    "gst_paise": d.cgst_paise + d.sgst_paise + d.igst_paise,
                    "total_paise": d.total_paise,
                },
            )
        )
    return out


def timeline(story: PaymentStory, *, staff: bool) -> list[Entry]:
    entries = [
        *_events(story, staff),
        *_attempts(story),
        *_webhooks(story),
        *_credits(story),
        *_refunds(story, staff),
        *_documents(story),
    ]
    # sorted() is stable: same instant and type keep the order their source gave.
    return sorted(entries, key=lambda e: (e.sort_at, _RANK[e.type]))
