"""The merchant's settlements and their reports (cashfree.md §7), and the per-order split
recon (§6.1).

Each captured payment and each successful refund is an `Event`. Events older than
`merchant_settlement_s` (sandbox clock) form one settlement per tick: every due payment, then
due refunds while the settlement stays non-negative (a refund that would make it negative
waits for later payments). A payment row carries Cashfree's charge (`service_charge_bps`,
rounded down) and 18% GST on it (rounded down); a refund row carries none. A settlement pays
payments - refunds - charges - tax - the vendors' net part (`vendor_commission`: the split
shares credited minus the vendors' part of refunds), so its rows add up to it exactly.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from commdesk_billing.gateway.sandbox.split.store import Event, Settlement, SplitStore
from commdesk_billing.gateway.sandbox.store import Order, Payment, Refund, Store
from commdesk_billing.gateway.sandbox.wire import IST, Money, ist_text

if TYPE_CHECKING:
    from commdesk_billing.gateway.sandbox.split.settings import SplitSettings

GST_PERCENT = 18


def report_time(moment: datetime) -> str:
    """`2025-02-14 12:00:00` (§5.6's payment_from / payment_till), IST."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


class Reports:
    def __init__(self, store: SplitStore, pg: Store, settings: Callable[[], SplitSettings]) -> None:
        self.store = store
        self.pg = pg
        self._settings = settings

    # Events -----------------------------------------------------------------------------

    def payment(self, order_id: str, payment: Payment, vendor_paise: int, at: datetime) -> None:
        charge = payment.amount_paise * self._settings().service_charge_bps // 10_000
        self.store.events[payment.cf_payment_id] = Event(
            event_id=payment.cf_payment_id,
            event_type="PAYMENT",
            order_id=order_id,
            amount_paise=payment.amount_paise,
            service_charge_paise=charge,
            service_tax_paise=charge * GST_PERCENT // 100,
            vendor_paise=vendor_paise,
            at=at,
        )

    def refund(self, refund: Refund, vendor_paise: int, at: datetime) -> None:
        self.store.events[refund.cf_refund_id] = Event(
            event_id=refund.cf_refund_id,
            event_type="REFUND",
            order_id=refund.order_id,
            amount_paise=refund.amount_paise,
            service_charge_paise=0,
            service_tax_paise=0,
            vendor_paise=vendor_paise,
            at=at,
        )

    @staticmethod
    def net(event: Event) -> int:
        """What the event means to the merchant's settlement, signed."""
        own = event.settlement_paise - event.vendor_paise
        return own if event.event_type == "PAYMENT" else -own

    def merchant_unsettled(self) -> int:
        return sum(self.net(e) for e in self.store.events.values() if e.settlement_id is None)

    # Settlements ------------------------------------------------------------------------

    def form(self, now: datetime, *, force: bool = False) -> Settlement | None:
        """One settlement of every event due by `now` (all open ones with `force`)."""
        cutoff = now - timedelta(seconds=self._settings().merchant_settlement_s)
        due = sorted(
            (
                e
                for e in self.store.events.values()
                if e.settlement_id is None and not e.held and (force or e.at <= cutoff)
            ),
            key=lambda e: e.at,
        )
        taken = [e for e in due if e.event_type == "PAYMENT"]
        running = sum(self.net(e) for e in taken)
        for event in (e for e in due if e.event_type == "REFUND"):
            if running + self.net(event) >= 0:
                taken.append(event)
                running += self.net(event)
        if not taken:
            return None

        def total(kind: str, pick: Callable[[Event], int]) -> int:
            return sum(pick(e) for e in taken if e.event_type == kind)

        settlement = Settlement(
            cf_settlement_id=self.store.next_settlement_id(),
            event_ids=[e.event_id for e in taken],
            payment_paise=total("PAYMENT", lambda e: e.amount_paise),
            refund_paise=total("REFUND", lambda e: e.amount_paise),
            service_charge_paise=total("PAYMENT", lambda e: e.service_charge_paise),
            service_tax_paise=total("PAYMENT", lambda e: e.service_tax_paise),
            vendor_commission_paise=total("PAYMENT", lambda e: e.vendor_paise)
            - total("REFUND", lambda e: e.vendor_paise),
            payment_from=min(e.at for e in taken),
            payment_till=max(e.at for e in taken),
            initiated_on=now,
            settled_on=now,
            utr="".join(secrets.choice("0123456789") for _ in range(16)),
        )
        for event in taken:
            event.settlement_id = settlement.cf_settlement_id
        self.store.settlements[settlement.cf_settlement_id] = settlement
        return settlement

    def settle_again(self, event: Event, now: datetime) -> Settlement:
        """A planted fault: a second settlement paying an event a settlement already paid
        (the report then shows the event under both). Its figures are the event's alone."""
        payment = event.event_type == "PAYMENT"
        settlement = Settlement(
            cf_settlement_id=self.store.next_settlement_id(),
            event_ids=[event.event_id],
            payment_paise=event.amount_paise if payment else 0,
            refund_paise=0 if payment else event.amount_paise,
            service_charge_paise=event.service_charge_paise if payment else 0,
            service_tax_paise=event.service_tax_paise if payment else 0,
            vendor_commission_paise=event.vendor_paise if payment else -event.vendor_paise,
            payment_from=event.at,
            payment_till=event.at,
            initiated_on=now,
            settled_on=now,
            utr="".join(secrets.choice("0123456789") for _ in range(16)),
        )
        self.store.settlements[settlement.cf_settlement_id] = settlement
        return settlement

    def settlement_entity(self, s: Settlement) -> dict[str, Any]:
        """A row of `POST /settlements` (the §5.6 settlement fields; UNCONFIRMED shape)."""
        return {
            "cf_settlement_id": s.cf_settlement_id,
            "settlement_id": s.cf_settlement_id,
            "status": s.status,
            "utr": s.utr,
            "payment_amount": Money(s.payment_paise),
            # Refunds and the vendors' part, taken from the payments (signed).
            "adjustment": Money(-(s.refund_paise + s.vendor_commission_paise)),
            "service_charge": Money(s.service_charge_paise),
            "service_tax": Money(s.service_tax_paise),
            "settlement_amount": Money(s.amount_paise),
            "amount_settled": Money(s.amount_paise),
            "settlement_charge": Money(0),
            "settlement_tax": Money(0),
            "settlement_currency": "INR",
            "settlement_type": "STANDARD",
            "payment_from": report_time(s.payment_from),
            "payment_till": report_time(s.payment_till),
            "settlement_initiated_on": ist_text(s.initiated_on),
            "settled_on": ist_text(s.settled_on),
            "reason": None,
            "remarks": None,
        }

    def order_settlement(self, order: Order) -> dict[str, Any] | None:
        """`GET /orders/{id}/settlements` (SDK6 `SettlementEntity`); None: not paid."""
        event = next(
            (self.store.events[p] for p in order.payment_ids if p in self.store.events), None
        )
        if event is None:
            return None
        payment = self.pg.payments[event.event_id]
        s = self.store.settlements.get(event.settlement_id) if event.settlement_id else None
        return {
            "cf_payment_id": event.event_id,
            "cf_settlement_id": str(s.cf_settlement_id) if s else None,
            "settlement_currency": "INR",
            "order_id": order.order_id,
            "entity": "settlement",
            "order_amount": Money(order.amount_paise),
            "payment_time": ist_text(payment.started_at),
            "service_charge": Money(event.service_charge_paise),
            "service_tax": Money(event.service_tax_paise),
            "settlement_amount": Money(self.net(event)),
            "settlement_id": s.cf_settlement_id if s else None,
            "transfer_id": s.cf_settlement_id if s else None,
            "transfer_time": ist_text(s.settled_on) if s else None,
            "transfer_utr": s.utr if s else None,
            "forex_conversion_handling_charge": None,
            "forex_conversion_handling_tax": None,
            "forex_conversion_rate": None,
            "charges_currency": "INR",
        }

    # Recon rows ---------------------------------------------------------------------------

    def row(
        self, event: Event, *, mode_key: str, settlement: Settlement | None = None
    ) -> dict[str, Any]:
        """A §7 recon row; `mode_key`: `payment_group` (/recon) or `payment_mode`
        (/settlement/recon). `settlement`: the one the row is listed under (a settlement's
        own report), by default the one that took the event."""
        order = self.pg.orders[event.order_id]
        refund = (
            next(r for r in self.pg.order_refunds(order) if r.cf_refund_id == event.event_id)
            if event.event_type == "REFUND"
            else None
        )
        # The row's own payment: the event's, or the one the refund was made against.
        payment = self.pg.payments[refund.cf_payment_id if refund else event.event_id]
        # Every captured payment has one, unless a planted fault took it out of the reports.
        charged = self.store.events.get(payment.cf_payment_id)
        s = settlement or (
            self.store.settlements.get(event.settlement_id) if event.settlement_id else None
        )
        customer = order.customer
        return {
            "event_details": {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "event_settlement_amount": Money(event.settlement_paise),
                "event_amount": Money(event.amount_paise),
                "sale_type": "CREDIT" if event.event_type == "PAYMENT" else "DEBIT",
                "event_status": "SUCCESS",
                "entity": "Recon",
                "event_time": ist_text(event.at),
                "event_currency": "INR",
                "event_service_charge": Money(event.service_charge_paise),
                "event_service_tax": Money(event.service_tax_paise),
                "event_remarks": None,
            },
            "order_details": {
                "order_id": order.order_id,
                "order_amount": Money(order.amount_paise),
                "order_currency": order.currency,
                "order_tags": order.tags,
            },
            "customer_details": {
                k: customer.get(k)
                for k in (
                    "customer_phone",
                    "customer_email",
                    "customer_name",
                    "customer_id",
                    "customer_bank_account_number",
                    "customer_bank_code",
                    "customer_bank_ifsc",
                )
            },
            "payment_details": {
                "payment_amount": Money(payment.amount_paise),
                "payment_currency": payment.currency,
                "bank_reference": payment.bank_reference,
                "payment_time": ist_text(payment.started_at),
                mode_key: payment.group,
                "payment_service_charge": Money(charged.service_charge_paise if charged else 0),
                "payment_service_tax": Money(charged.service_tax_paise if charged else 0),
                "cf_payment_id": payment.cf_payment_id,
                "status": str(payment.status),
                "forex_conversion_handling_charge": None,
                "forex_conversion_handling_tax": None,
                "charges_currency": "INR",
            },
            "settlement_details": self._settlement_details(s, event) if s else None,
            "dispute_details": None,
            "refund_details": {
                "refund_processed_at": ist_text(refund.processed_at)
                if refund.processed_at
                else None,
                "refund_arn": refund.arn,
                "refund_note": refund.note,
                "refund_id": refund.refund_id,
            }
            if refund
            else None,
        }

    @staticmethod
    def _settlement_details(s: Settlement, event: Event) -> dict[str, Any]:
        return {
            "cf_settlement_id": s.cf_settlement_id,
            "settlement_date": ist_text(s.settled_on),
            "utr": s.utr,
            "split_service_charge": Money(0),
            "split_service_tax": Money(0),
            # This event's vendors' part (their shares, or their part of a refund).
            "vendor_commission": Money(event.vendor_paise),
            "payment_from": report_time(s.payment_from),
            "payment_till": report_time(s.payment_till),
            "reason": None,
            "remarks": None,
            "service_charge": Money(s.service_charge_paise),
            "service_tax": Money(s.service_tax_paise),
            "settlement_charge": Money(0),
            "settlement_initiated_on": ist_text(s.initiated_on),
            "settlement_tax": Money(0),
            "settlement_type": "STANDARD",
        }

    # Split recon ------------------------------------------------------------------------

    def split_recon(self, order: Order, entries: list[Any]) -> dict[str, Any]:
        settlement = self.order_settlement(order)
        vendors: dict[str, dict[str, Any]] = {}
        delay = timedelta(seconds=self._settings().vendor_settlement_s)
        for entry in entries:
            row = vendors.setdefault(
                entry.vendor_id,
                {
                    "vendor_id": entry.vendor_id,
                    "settlement_id": None,
                    "settlement_amount": 0,
                    "settlement_eligibility_date": None,
                },
            )
            row["settlement_amount"] += entry.amount_paise
            if entry.kind == "PAYMENT":
                row["settlement_id"] = entry.settlement_id
                row["settlement_eligibility_date"] = ist_text(entry.at + delay)
        refunds = [
            {
                "refund_id": r.refund_id,
                "cf_refund_id": r.cf_refund_id,
                "refund_amount": Money(r.amount_paise),
                "refund_status": str(r.status),
                "refund_splits": [{"vendor_id": v, "amount": Money(p)} for v, p in r.splits],
            }
            for r in self.pg.order_refunds(order)
        ]
        return {
            "settlement": {
                "cf_settlement_id": settlement["cf_settlement_id"],
                "settlement_amount": settlement["settlement_amount"],
                "service_charge": settlement["service_charge"],
                "service_tax": settlement["service_tax"],
                "settlement_utr": settlement["transfer_utr"],
                "settlement_date": settlement["transfer_time"],
            }
            if settlement and settlement["cf_settlement_id"]
            else None,  # not settled yet
            "refunds": refunds,
            "vendors": [
                r | {"settlement_amount": Money(r["settlement_amount"])} for r in vendors.values()
            ],
        }


# Pagination ---------------------------------------------------------------------------------


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeError):
        return None
    kind, _, number = text.partition(":")
    return int(number) if kind == "o" and number.isdigit() and len(number) < 10 else None
