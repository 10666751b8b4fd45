"""What Easy Split does in the sandbox: vendors and their KYC, splits checked at order create,
the vendors' shares credited when the order is paid and debited by refunds, and vendor
settlements with their webhooks (cashfree.md §6.1, §14).

Vendor: IN_BENE_CREATION -> the status asked for (ACTIVE) after `kyc_s` on the sandbox clock
(BLOCKED for one of Cashfree's invalid test bank accounts), or BLOCKED when the control API
rejects its KYC. Vendor settlement: CREATED (webhook
`initiated_event`) -> SUCCESS after `vendor_step_s` (VENDOR_SETTLEMENT_SUCCESS), or FAILED, or
SUCCESS then REVERSED (faults). A FAILED or REVERSED settlement gives its entries back to the
vendor's unsettled balance, to be settled again. Due steps run every `split_tick_s`, on every
Easy Split or settlement call, and when the clock is moved.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.payouts.bank import account_check as bank_check
from commdesk_billing.gateway.sandbox.split import entities, validation
from commdesk_billing.gateway.sandbox.split.reports import Reports
from commdesk_billing.gateway.sandbox.split.settings import SplitSettings
from commdesk_billing.gateway.sandbox.split.store import (
    Entry,
    Split,
    SplitStore,
    Vendor,
    VendorSettlement,
)
from commdesk_billing.gateway.sandbox.store import Order, Payment, Refund, Store
from commdesk_billing.gateway.sandbox.webhooks import Event, Notifier, event_key
from commdesk_billing.gateway.sandbox.wire import Clock, dumps, ist_text


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class SplitSandbox:
    def __init__(
        self,
        settings: SplitSettings,
        *,
        clock: Clock,
        notifier: Notifier,
        merchant_id: str,
        pg: Store,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier
        self.merchant_id = merchant_id
        self.store = SplitStore()
        self.reports = Reports(self.store, pg, lambda: self.settings)

    # Clock ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Everything due by now: KYC ends, vendor settlements start and move on, merchant
        settlements form."""
        now = self.clock.now()
        for vendor in self.store.vendors.values():
            if vendor.active_at is not None and vendor.active_at <= now:
                self._end_kyc(vendor)
                vendor.updated_on = now
        due = timedelta(seconds=self.settings.vendor_settlement_s)
        for vendor_id in list(self.store.vendors):
            credits = [
                e.at
                for e in self.store.vendor_entries(vendor_id)
                if e.settlement_id is None and e.amount_paise > 0
            ]
            hold = self.store.vendors[vendor_id].hold_until
            if credits and min(credits) + due <= now and (hold is None or hold <= now):
                self.settle_vendor(vendor_id)
        for settlement in sorted(
            self.store.vendor_settlements.values(), key=lambda s: s.settlement_id
        ):
            while settlement.due_at is not None and settlement.due_at <= now:
                self._step(settlement)
        self.reports.form(now)

    @staticmethod
    def _end_kyc(vendor: Vendor) -> None:
        """The beneficiary is created: the status asked for, unless the bank account is one of
        Cashfree's invalid test accounts (the Payouts side's list), which blocks the vendor."""
        vendor.active_at = None
        bank = vendor.bank
        status, code = bank_check(bank["account_number"], bank["ifsc"]) if bank else ("VALID", "")
        if status == "INVALID":
            vendor.status, vendor.remarks = "BLOCKED", f"Bank account verification failed: {code}"
        else:
            vendor.status = vendor.wanted_status

    # Vendors --------------------------------------------------------------------------

    def create_vendor(self, body: Any) -> Vendor:
        req = validation.new_vendor(body)
        assert req.vendor_id is not None and req.kyc is not None
        if req.vendor_id in self.store.vendors:
            raise CashfreeError(
                409, "vendor_already_exists", "vendor with the same vendor_id already exists"
            )
        now = self.clock.now()
        vendor = Vendor(
            vendor_id=req.vendor_id,
            status="IN_BENE_CREATION",
            name=req.name or "",
            email=req.email or "",
            phone=req.phone or "",
            bank=req.bank,
            upi=req.upi,
            kyc=req.kyc,
            verify_account=bool(req.verify_account),
            dashboard_access=bool(req.dashboard_access),
            schedule_option=req.schedule_option or 1,
            added_on=now,
            updated_on=now,
            wanted_status=req.status or "ACTIVE",
            active_at=now + timedelta(seconds=self.settings.kyc_s),
        )
        self.store.vendors[vendor.vendor_id] = vendor
        return vendor

    def vendor(self, vendor_id: str) -> Vendor:
        self.tick()
        vendor = self.store.vendors.get(vendor_id)
        if vendor is None:
            raise not_found("vendor_not_found", "vendor does not exist")
        return vendor

    def update_vendor(self, vendor_id: str, body: Any) -> Vendor:
        req = validation.vendor_update(body)
        vendor = self.vendor(vendor_id)
        if vendor.status == "DELETED":
            raise bad_request("vendor_deleted", "vendor is deleted and cannot be updated")
        now = self.clock.now()
        for name in ("name", "email", "phone", "verify_account", "dashboard_access"):
            value = getattr(req, name)
            if value is not None:
                setattr(vendor, name, value)
        if req.schedule_option is not None:
            vendor.schedule_option = req.schedule_option
        if req.kyc is not None:
            vendor.kyc = req.kyc
        if req.bank is not None or req.upi is not None:
            # New settlement details: a new beneficiary, so KYC again (README, UNCONFIRMED).
            vendor.bank, vendor.upi = req.bank or None, req.upi or None
            vendor.wanted_status = req.status or (
                "ACTIVE" if vendor.status == "IN_BENE_CREATION" else vendor.status
            )
            vendor.status = "IN_BENE_CREATION"
            vendor.active_at = now + timedelta(seconds=self.settings.kyc_s)
        elif req.status is not None:
            if vendor.status == "IN_BENE_CREATION":
                vendor.wanted_status = req.status
            else:
                vendor.status = req.status
        vendor.updated_on = now
        return vendor

    def force(self, vendor_id: str, action: str) -> Vendor:
        """Control API: end KYC now (`activate`), reject it (`reject_kyc`) or `block`."""
        vendor = self.vendor(vendor_id)
        vendor.active_at = None
        if action == "activate":
            vendor.status, vendor.remarks = "ACTIVE", None
        elif action == "reject_kyc":
            vendor.status, vendor.remarks = "BLOCKED", "KYC documents rejected"
        else:
            vendor.status, vendor.remarks = "BLOCKED", "Blocked by the merchant's risk team"
        vendor.updated_on = self.clock.now()
        return vendor

    def balance(self, vendor_id: str) -> dict[str, Any]:
        vendor = self.vendor(vendor_id)
        unsettled = self.unsettled(vendor.vendor_id)
        merchant = self.reports.merchant_unsettled()
        return entities.balance_entity(self.merchant_id, vendor.vendor_id, merchant, unsettled)

    def unsettled(self, vendor_id: str) -> int:
        return sum(
            e.amount_paise for e in self.store.vendor_entries(vendor_id) if e.settlement_id is None
        )

    # Orders and refunds ---------------------------------------------------------------

    def check_splits(self, raw: Any, order_paise: int) -> list[Split]:
        splits = validation.order_splits(raw, order_paise)
        self.tick()
        for split in splits:
            vendor = self.store.vendors.get(split.vendor_id)
            if vendor is None or vendor.status == "DELETED":
                raise validation.split_error(validation.NO_VENDOR)
            if vendor.status != "ACTIVE":
                raise validation.split_error(f"vendor is not active: {vendor.status}")
        return splits

    def on_captured(self, order: Order, payment: Payment, *, split: bool) -> None:
        """A payment succeeded: it is reported for the merchant's settlement; with `split`
        (the payment that paid the order) each vendor's share is credited."""
        now = self.clock.now()
        vendor_paise = 0
        for split_ in self.store.order_splits.get(order.order_id, []) if split else []:
            share = split_.share(payment.amount_paise)
            vendor_paise += share
            self._entry(split_.vendor_id, order.order_id, "PAYMENT", payment.cf_payment_id, share)
        self.reports.payment(order.order_id, payment, vendor_paise, now)

    def refund_plan(
        self, order: Order, refund_paise: int, raw: Any, earlier: Sequence[Refund]
    ) -> tuple[list[tuple[str, int]], bool]:
        """Each vendor's debit for a refund (explicit `refund_splits`, else in proportion to
        the vendor's share: cumulative, rounded down, so refunding the whole order takes back
        each share exactly). `earlier`: the order's refunds not CANCELLED."""
        explicit = validation.refund_splits(raw)
        splits = self.store.order_splits.get(order.order_id, [])
        shares = {s.vendor_id: s.share(order.amount_paise) for s in splits}
        taken: dict[str, int] = dict.fromkeys(shares, 0)
        for refund in earlier:
            for vendor_id, paise in refund.splits:
                taken[vendor_id] = taken.get(vendor_id, 0) + paise
        if explicit is not None:
            if sum(paise for _, paise in explicit) > refund_paise:
                raise bad_request(
                    "refund_splits_invalid",
                    "refund_splits : total is more than the refund_amount",
                )
            for vendor_id, paise in explicit:
                if vendor_id not in shares:
                    raise bad_request(
                        "refund_splits_invalid",
                        f"refund_splits : vendor {vendor_id} is not in this order's split",
                    )
                if paise > shares[vendor_id] - taken[vendor_id]:
                    raise bad_request(
                        "refund_splits_invalid",
                        f"refund_splits : more than vendor {vendor_id}'s share not yet refunded",
                    )
            return [(v, p) for v, p in explicit if p > 0], True
        refunded = sum(r.amount_paise for r in earlier) + refund_paise
        plan = []
        for vendor_id, share in shares.items():
            target = min(share, refunded * share // order.amount_paise)
            debit = max(0, target - taken[vendor_id])
            if debit:
                plan.append((vendor_id, debit))
        return plan, False

    def on_refunded(self, refund: Refund) -> None:
        """A refund SUCCEEDED: the vendors' part is debited (a settled vendor goes negative,
        recovered from its next settlement, §14.3); the refund is reported."""
        vendor_paise = 0
        for vendor_id, paise in refund.splits:
            vendor_paise += paise
            self._entry(vendor_id, refund.order_id, "REFUND", refund.cf_refund_id, -paise)
        self.reports.refund(refund, vendor_paise, self.clock.now())

    def _entry(self, vendor_id: str, order_id: str, kind: str, entity_id: str, paise: int) -> None:
        self.store.entries.append(
            Entry(
                len(self.store.entries) + 1,
                vendor_id,
                order_id,
                kind,
                entity_id,
                paise,
                self.clock.now(),
            )
        )

    # Vendor settlements ---------------------------------------------------------------

    def settle_vendor(self, vendor_id: str) -> VendorSettlement | None:
        """Settle the vendor's unsettled balance now; None when it is not positive (a
        negative one waits for credits) or the vendor cannot be paid."""
        vendor = self.store.vendors[vendor_id]
        open_ = [e for e in self.store.vendor_entries(vendor_id) if e.settlement_id is None]
        total = sum(e.amount_paise for e in open_)
        if total <= 0 or vendor.status != "ACTIVE":
            return None
        now = self.clock.now()
        settings = self.settings
        outcome = "SUCCESS"
        if settings.fail_vendor_settlements:
            settings.fail_vendor_settlements -= 1
            outcome = "FAILED"
        elif settings.reverse_vendor_settlements:
            settings.reverse_vendor_settlements -= 1
            outcome = "REVERSED"
        settlement = VendorSettlement(
            settlement_id=self.store.next_settlement_id(),
            vendor_id=vendor_id,
            entry_seqs=[e.seq for e in open_],
            vendor_transaction_paise=sum(e.amount_paise for e in open_ if e.amount_paise > 0),
            adjustment_paise=sum(e.amount_paise for e in open_ if e.amount_paise < 0),
            payment_from=min(e.at for e in open_),
            payment_till=max(e.at for e in open_),
            initiated_on=now,
            account_mode="BANK" if vendor.bank else "UPI",
            utr=_digits(16),
            due_at=now + timedelta(seconds=settings.vendor_step_s),
            outcome=outcome,
        )
        for entry in open_:
            entry.settlement_id = settlement.settlement_id
        self.store.vendor_settlements[settlement.settlement_id] = settlement
        self._publish(settlement, settings.initiated_event)
        return settlement

    def _step(self, settlement: VendorSettlement) -> None:
        assert settlement.due_at is not None
        at, settlement.due_at = settlement.due_at, None
        if settlement.status == "CREATED" and settlement.outcome == "FAILED":
            settlement.status, settlement.reason = "FAILED", self.settings.failure_reason
            self._release(settlement, at)
            self._publish(settlement, "VENDOR_SETTLEMENT_FAILED")
        elif settlement.status == "CREATED":
            settlement.status, settlement.settled_on = "SUCCESS", at
            if settlement.outcome == "REVERSED":
                settlement.due_at = at + timedelta(seconds=self.settings.vendor_step_s)
            self._publish(settlement, "VENDOR_SETTLEMENT_SUCCESS")
        elif settlement.status == "SUCCESS":
            settlement.status, settlement.reason = "REVERSED", self.settings.failure_reason
            self._release(settlement, at)
            self._publish(settlement, "VENDOR_SETTLEMENT_REVERSED")

    def _release(self, settlement: VendorSettlement, at: datetime) -> None:
        """The settlement's entries are the vendor's unsettled balance again."""
        vendor = self.store.vendors[settlement.vendor_id]
        vendor.hold_until = at + timedelta(seconds=self.settings.vendor_settlement_s)
        for entry in self.store.entries:
            if entry.settlement_id == settlement.settlement_id:
                entry.settlement_id = None

    def _publish(self, settlement: VendorSettlement, event_type: str) -> None:
        vendor = self.store.vendors[settlement.vendor_id]
        orders = {e.order_id for e in self.store.entries if e.seq in set(settlement.entry_seqs)}
        body = entities.vendor_settlement_webhook(
            settlement, vendor, len(orders), event_type, ist_text(self.clock.now())
        )
        event = Event(
            type=event_type,
            body=dumps(body),
            idempotency_key=event_key(event_type, str(settlement.settlement_id), settlement.status),
            subject_id=settlement.vendor_id,
            entity_id=str(settlement.settlement_id),
        )
        self.notifier.publish(event, self.settings.webhook_url)

    # Split recon ------------------------------------------------------------------------

    def order_recon(self, order: Order) -> dict[str, Any]:
        """`GET /easy-split/orders/{order_id}` (§6.1 PGSplitOrderRecon)."""
        self.tick()
        return self.reports.split_recon(order, self.store.order_entries(order.order_id))

    def settled_at(self, settlement_id: int | None) -> datetime | None:
        vs = self.store.vendor_settlements.get(settlement_id) if settlement_id else None
        return vs.settled_on if vs else None
