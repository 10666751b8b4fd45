"""What the analytics services return: typed models, the API's answers as they are and what
the finance console charts. Money is integer paise; a rate is integer basis points (1 % =
100 bp), floored, None where nothing was attempted."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field


class Figures(BaseModel):
    """One day's or one period's figures."""

    payments_created: int = Field(description="Orders opened (any kind, any end)")
    payments_succeeded: int = Field(description="Paid: PAID, CREDITED or REVIEW")
    payments_failed: int = Field(description="FAILED, USER_DROPPED, EXPIRED or CANCELLED")
    success_rate_bp: int | None = Field(description="succeeded / (succeeded + failed)")
    collected_paise: int = Field(description="Money in: gateway clearing debited by payments")
    revenue_recognized_paise: int = Field(description="Platform revenue: credits consumed")
    subscription_revenue_paise: int
    fees_paise: int = Field(description="Platform, sponsorship and payout fee revenue")
    platform_fee_paise: int
    sponsorship_fee_paise: int
    payout_fee_paise: int
    breakage_paise: int = Field(description="Revenue from credits that expired unused")
    deferred_added_paise: int = Field(description="Deferred revenue credited (purchases)")
    deferred_released_paise: int = Field(description="Deferred revenue debited")
    gst_collected_paise: int = Field(description="GST payable, net of GST refunded")
    refunds_requested: int
    refunds_succeeded: int
    refunded_paise: int = Field(description="Refunds owed to buyers (refunds payable credited)")
    refunds_paid_paise: int = Field(description="Refunds paid out (refunds payable debited)")
    refund_rate_bp: int | None = Field(description="refunded_paise / collected_paise")
    auto_recharges: int = Field(description="Auto-recharges triggered")
    auto_recharges_succeeded: int
    auto_recharge_paise: int = Field(description="What succeeded auto-recharges charged")
    community_earnings_paise: int = Field(description="Owed to communities: spends, milestones")
    community_settled_paise: int = Field(description="Taken into settlements (gross)")
    payouts_paid_paise: int = Field(description="Settlements paid out (net)")
    settlements_created: int
    fraud_events: int


class DayFigures(Figures):
    day: date


class PaymentsLine(BaseModel):
    status: str
    method: str
    payments: int
    amount_paise: int


class PaymentsDayLine(PaymentsLine):
    day: date


class PaymentsDaily(BaseModel):
    """Payments by day (of their order's opening), status and method: only the combinations
    that occurred, ordered by day, status and method."""

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    lines: list[PaymentsDayLine]

    model_config = {"populate_by_name": True}


class StatusLine(BaseModel):
    status: str
    count: int
    amount_paise: int


class FraudLine(BaseModel):
    kind: str
    severity: str
    events: int


class Summary(BaseModel):
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    totals: Figures
    deferred_revenue_closing_paise: int = Field(
        description="Deferred revenue's balance at the end of the period (credit-normal)"
    )
    payments: list[PaymentsLine]
    refunds: list[StatusLine]
    auto_recharges: list[StatusLine]
    settlements: list[StatusLine]
    fraud_events: list[FraudLine]

    model_config = {"populate_by_name": True}


class Daily(BaseModel):
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    days: list[DayFigures]

    model_config = {"populate_by_name": True}


class TrialBalanceLine(BaseModel):
    """Signed as the ledger is: a debit balance > 0, a credit balance < 0."""

    ledger: Literal["INR", "CREDITS"]
    account_code: str
    account_kind: str
    account_name: str
    normal_side: str
    opening: int
    debits: int
    credits: int
    closing: int


class LedgerTotals(BaseModel):
    """A ledger's column sums: opening and closing are zero, debits equal credits."""

    ledger: Literal["INR", "CREDITS"]
    unit: Literal["paise", "credits"]
    opening: int
    debits: int
    credits: int
    closing: int


class TrialBalance(BaseModel):
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    ledgers: list[LedgerTotals]
    accounts: list[TrialBalanceLine]

    model_config = {"populate_by_name": True}


GstSection = Literal["b2b", "b2cl", "b2cs", "cdnr", "cdnur"]


class GstLine(BaseModel):
    """One GSTR-1 line: documents of one section, place of supply and rate."""

    section: GstSection
    document_kind: Literal["tax_invoice", "credit_note"]
    place_of_supply: str
    rate_bp: int
    documents: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int


class GstTotals(BaseModel):
    documents: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int


class GstSummary(BaseModel):
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    lines: list[GstLine]
    outward: GstTotals = Field(description="Tax invoices issued")
    credit_notes: GstTotals = Field(description="Credit notes issued")
    net: GstTotals = Field(description="Invoices less credit notes (documents: both counted)")

    model_config = {"populate_by_name": True}
