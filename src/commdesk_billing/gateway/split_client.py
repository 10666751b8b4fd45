"""Easy Split and settlement-report calls of the PG client (cashfree.md §6.1, §7, §14), kept
apart from `client.py` so each file keeps one job; `CashfreeClient` includes them.

Retries: reads (GETs and the report POSTs, which change nothing) are retried; a vendor create
is deduplicated by its `vendor_id` (Cashfree answers 409 to a second one), so it is retried
too and a 409 is answered with the vendor already there when its details are ours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.errors import CashfreeConflict
from commdesk_billing.gateway.split_models import (
    OrderSettlement,
    ReconPage,
    ReconRow,
    RefundShare,
    Settlement,
    SettlementPage,
    SplitOrderRecon,
    SplitShare,
    Vendor,
    VendorBalance,
)
from commdesk_billing.gateway.transport import Transport

VENDOR_EXISTS = "vendor_already_exists"
REPORT_LIMIT = 100


def seg(value: str) -> str:
    """A path segment: ids are ours (`[A-Za-z0-9_-]`), but never let one carry a slash."""
    return httpx.URL("/" + value).raw_path.decode().lstrip("/").replace("/", "%2F")


def split_body(shares: Sequence[SplitShare]) -> list[dict[str, Any]]:
    out = []
    for share in shares:
        item: dict[str, Any] = {"vendor_id": share.vendor_id}
        if share.amount_paise is not None:
            item["amount"] = to_rupees(share.amount_paise)
        else:
            item["percentage"] = share.percentage
        if share.tags:
            item["tags"] = dict(share.tags)
        out.append(item)
    return out


def refund_split_body(shares: Sequence[RefundShare]) -> list[dict[str, Any]]:
    return [{"vendor_id": s.vendor_id, "amount": to_rupees(s.amount_paise)} for s in shares]


def _account(
    bank_account_number: str | None,
    bank_ifsc: str | None,
    vpa: str | None,
    account_holder: str | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if bank_account_number or bank_ifsc:
        out["bank"] = {
            "account_number": bank_account_number,
            "account_holder": account_holder,
            "ifsc": bank_ifsc,
        }
    if vpa:
        out["upi"] = {"vpa": vpa, "account_holder": account_holder}
    return out


def _time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("report dates need a time zone")
    return value.isoformat()


def _filters(
    *,
    settlement_ids: Iterable[int | str] | None = None,
    utrs: Iterable[str] | None = None,
    statuses: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    ids_as_int: bool = False,
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if settlement_ids is not None:
        ids = [int(i) if ids_as_int else str(i) for i in settlement_ids]
        filters["cf_settlement_ids"] = ids
    if utrs is not None:
        filters["settlement_utrs"] = list(utrs)
    if statuses is not None:
        filters["settlement_status"] = list(statuses)
    if start is not None:
        filters["start_date"] = _time(start)
    if end is not None:
        filters["end_date"] = _time(end)
    return filters


class SplitCalls:
    _api: Transport

    # --- vendors --------------------------------------------------------------------------

    async def create_vendor(
        self,
        *,
        vendor_id: str,
        name: str,
        email: str,
        phone: str,
        kyc_details: Mapping[str, str],
        account_holder: str,
        bank_account_number: str | None = None,
        bank_ifsc: str | None = None,
        vpa: str | None = None,
        status: str = "ACTIVE",
        schedule_option: int | None = None,
        verify_account: bool | None = None,
        dashboard_access: bool | None = None,
    ) -> Vendor:
        """Create an Easy Split vendor (a bank account + IFSC, or a VPA). It starts
        IN_BENE_CREATION and becomes `status` once Cashfree has checked it. Safe to repeat:
        a repeat with the same name and account answers with the vendor already there; the
        same `vendor_id` with other details is a `CashfreeConflict`."""
        body: dict[str, Any] = {
            "vendor_id": vendor_id,
            "status": status,
            "name": name,
            "email": email,
            "phone": phone,
            "kyc_details": dict(kyc_details),
            **_account(bank_account_number, bank_ifsc, vpa, account_holder),
        }
        for key, value in (
            ("schedule_option", schedule_option),
            ("verify_account", verify_account),
            ("dashboard_access", dashboard_access),
        ):
            if value is not None:
                body[key] = value
        try:
            return await self._api.call(
                "es_create_vendor",
                "POST",
                "/easy-split/vendors",
                Vendor,
                body=body,
                retry_safe=True,
            )
        except CashfreeConflict as exc:
            if exc.code != VENDOR_EXISTS:
                raise
            existing = await self.get_vendor(vendor_id)
            bank, upi = existing.bank, existing.upi
            same = (
                existing.name == name
                and (bank.account_number if bank else None) == bank_account_number
                and (bank.ifsc if bank else None) == bank_ifsc
                and (upi.vpa if upi else None) == vpa
            )
            if not same:
                raise
            return existing

    async def get_vendor(self, vendor_id: str) -> Vendor:
        return await self._api.call(
            "es_get_vendor", "GET", f"/easy-split/vendors/{seg(vendor_id)}", Vendor
        )

    async def update_vendor(
        self,
        vendor_id: str,
        *,
        status: str | None = None,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        account_holder: str | None = None,
        bank_account_number: str | None = None,
        bank_ifsc: str | None = None,
        vpa: str | None = None,
        kyc_details: Mapping[str, str] | None = None,
        schedule_option: int | None = None,
    ) -> Vendor:
        """Change a vendor's status (ACTIVE, BLOCKED, DELETED) or details; a new bank account
        or VPA sends it through IN_BENE_CREATION again. The same PATCH twice leaves the same
        vendor, so it is retried."""
        body: dict[str, Any] = {
            k: v
            for k, v in (
                ("status", status),
                ("name", name),
                ("email", email),
                ("phone", phone),
                ("schedule_option", schedule_option),
            )
            if v is not None
        }
        if kyc_details is not None:
            body["kyc_details"] = dict(kyc_details)
        body.update(_account(bank_account_number, bank_ifsc, vpa, account_holder))
        return await self._api.call(
            "es_update_vendor",
            "PATCH",
            f"/easy-split/vendors/{seg(vendor_id)}",
            Vendor,
            body=body,
            retry_safe=True,
        )

    async def get_vendor_balance(self, vendor_id: str) -> VendorBalance:
        return await self._api.call(
            "es_vendor_balance",
            "GET",
            f"/easy-split/vendors/{seg(vendor_id)}/balances",
            VendorBalance,
        )

    async def get_split_order_recon(self, order_id: str) -> SplitOrderRecon:
        return await self._api.call(
            "es_order_recon", "GET", f"/easy-split/orders/{seg(order_id)}", SplitOrderRecon
        )

    # --- settlement reports ----------------------------------------------------------------

    async def fetch_settlements_page(
        self,
        *,
        limit: int = REPORT_LIMIT,
        cursor: str | None = None,
        settlement_ids: Iterable[int | str] | None = None,
        utrs: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> SettlementPage:
        """One page of `POST /settlements`; pass its `cursor` back for the next one."""
        body = {
            "pagination": {"limit": limit, "cursor": cursor},
            "filters": _filters(
                settlement_ids=settlement_ids, utrs=utrs, statuses=statuses, start=start, end=end
            ),
        }
        return await self._api.call(
            "fetch_settlements",
            "POST",
            "/settlements",
            SettlementPage,
            body=body,
            retry_safe=True,
        )

    async def fetch_settlements(
        self,
        *,
        limit: int = REPORT_LIMIT,
        settlement_ids: Iterable[int | str] | None = None,
        utrs: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> AsyncIterator[Settlement]:
        """Every settlement the filters select, page by page."""
        ids = list(settlement_ids) if settlement_ids is not None else None
        utr_list = list(utrs) if utrs is not None else None
        status_list = list(statuses) if statuses is not None else None
        cursor: str | None = None
        while True:
            page = await self.fetch_settlements_page(
                limit=limit,
                cursor=cursor,
                settlement_ids=ids,
                utrs=utr_list,
                statuses=status_list,
                start=start,
                end=end,
            )
            for row in page.data:
                yield row
            if not page.cursor:
                return
            cursor = page.cursor

    async def order_settlement(self, order_id: str) -> OrderSettlement:
        return await self._api.call(
            "order_settlement", "GET", f"/orders/{seg(order_id)}/settlements", OrderSettlement
        )

    async def settlement_recon_page(
        self,
        *,
        limit: int = REPORT_LIMIT,
        cursor: str | None = None,
        settlement_ids: Iterable[int | str] | None = None,
        utrs: Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ReconPage:
        """One page of `POST /settlement/recon`: the rows of the settlements selected (by id,
        UTR or a date range; one of them is needed)."""
        body = {
            "pagination": {"limit": limit, "cursor": cursor},
            "filters": _filters(
                settlement_ids=settlement_ids, utrs=utrs, start=start, end=end, ids_as_int=True
            ),
        }
        return await self._api.call(
            "settlement_recon",
            "POST",
            "/settlement/recon",
            ReconPage,
            body=body,
            retry_safe=True,
        )

    async def settlement_recon(
        self,
        *,
        limit: int = REPORT_LIMIT,
        settlement_ids: Iterable[int | str] | None = None,
        utrs: Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> AsyncIterator[ReconRow]:
        """Every recon row of the settlements selected, page by page."""
        ids = list(settlement_ids) if settlement_ids is not None else None
        utr_list = list(utrs) if utrs is not None else None
        cursor: str | None = None
        while True:
            page = await self.settlement_recon_page(
                limit=limit, cursor=cursor, settlement_ids=ids, utrs=utr_list, start=start, end=end
            )
            for row in page.data:
                yield row
            if not page.cursor:
                return
            cursor = page.cursor

    async def recon_page(
        self,
        *,
        start: datetime,
        end: datetime,
        limit: int = REPORT_LIMIT,
        cursor: str | None = None,
    ) -> ReconPage:
        """One page of `POST /recon`: every payment and refund event between the dates."""
        body = {
            "pagination": {"limit": limit, "cursor": cursor},
            "filters": _filters(start=start, end=end),
        }
        return await self._api.call(
            "recon", "POST", "/recon", ReconPage, body=body, retry_safe=True
        )

    async def recon(
        self, *, start: datetime, end: datetime, limit: int = REPORT_LIMIT
    ) -> AsyncIterator[ReconRow]:
        cursor: str | None = None
        while True:
            page = await self.recon_page(start=start, end=end, limit=limit, cursor=cursor)
            for row in page.data:
                yield row
            if not page.cursor:
                return
            cursor = page.cursor
