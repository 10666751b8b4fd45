"""Request and response bodies of the settlements' API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from commdesk_billing.modules.settlements.model import (
    Attempt,
    AttemptStatus,
    Settlement,
    SettlementStatus,
)
from commdesk_billing.modules.settlements.service import Outcome
from commdesk_billing.money import rate_text
from commdesk_billing.security.text import StrictInput


class RunRequest(StrictInput):
    payee_id: uuid.UUID | None = Field(
        default=None, description="Settle this payee only; omitted: every payee payable now"
    )


class TransferOut(BaseModel):
    attempt: int
    transfer_id: str
    amount_paise: int
    status: AttemptStatus
    cashfree_status: str | None
    status_code: str | None
    utr: str | None

    @classmethod
    def of(cls, a: Attempt) -> TransferOut:
        return cls(
            attempt=a.attempt,
            transfer_id=a.transfer_id,
            amount_paise=a.amount_paise,
            status=a.status,
            cashfree_status=a.cf_status,
            status_code=a.status_code,
            utr=a.utr,
        )


class SettlementOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9a7e5c3b-1d2f-4e6a-8b0c-2d4f6a8b0c1e",
                    "payee_id": "6f1c2b9e-4d3a-4e8f-9b7c-1a2d3e4f5a6b",
                    "period": "weekly:2026-12-07",
                    "cut_off": "2026-12-06T18:30:00Z",
                    "status": "paid",
                    "account_mask": "XXXXXXXXXXX1191",
                    "payable_paise": 1250000,
                    "reserves_held_paise": 0,
                    "reserve_rate": "10.00%",
                    "reserve_paise": 125000,
                    "reserve_until": "2027-01-06T01:00:00Z",
                    "gross_paise": 1125000,
                    "tds_rate": "1.00%",
                    "tds_paise": 11250,
                    "tcs_rate": "0.00%",
                    "tcs_paise": 0,
                    "fee_paise": 500,
                    "net_paise": 1113250,
                    "utr": "YESB26341000123",
                    "failure_code": None,
                    "failure_reason": None,
                    "created_at": "2026-12-07T01:00:00Z",
                    "paid_at": "2026-12-07T01:04:10Z",
                    "ended_at": "2026-12-07T01:04:10Z",
                    "transfers": [
                        {
                            "attempt": 1,
                            "transfer_id": "stl9a7e5c3b1d2f4e6a8b0c2d4f6a8b0c1ea1",
                            "amount_paise": 1113250,
                            "status": "success",
                            "cashfree_status": "SUCCESS",
                            "status_code": "COMPLETED",
                            "utr": "YESB26341000123",
                        }
                    ],
                }
            ]
        }
    )

    id: uuid.UUID
    payee_id: uuid.UUID
    period: str
    cut_off: datetime
    status: SettlementStatus
    account_mask: str
    payable_paise: int = Field(description="Earned up to the cut-off, less earlier settlements")
    reserves_held_paise: int = Field(description="Earlier settlements' reserves still held")
    reserve_rate: str
    reserve_paise: int
    reserve_until: datetime
    gross_paise: int = Field(description="What left payable")
    tds_rate: str
    tds_paise: int
    tcs_rate: str
    tcs_paise: int
    fee_paise: int
    net_paise: int = Field(description="What Cashfree pays")
    utr: str | None
    failure_code: str | None
    failure_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    ended_at: datetime | None
    transfers: list[TransferOut] | None = None

    @classmethod
    def of(cls, s: Settlement, attempts: list[Attempt] | None = None) -> SettlementOut:
        return cls(
            id=s.id,
            payee_id=s.payee_id,
            period=s.period,
            cut_off=s.cut_off,
            status=s.status,
            account_mask=s.account_mask,
            payable_paise=s.payable_paise,
            reserves_held_paise=s.reserves_held_paise,
            reserve_rate=rate_text(s.reserve_bps),
            reserve_paise=s.reserve_paise,
            reserve_until=s.reserve_until,
            gross_paise=s.gross_paise,
            tds_rate=rate_text(s.tds_bps),
            tds_paise=s.tds_paise,
            tcs_rate=rate_text(s.tcs_bps),
            tcs_paise=s.tcs_paise,
            fee_paise=s.fee_paise,
            net_paise=s.net_paise,
            utr=s.utr,
            failure_code=s.failure_code,
            failure_reason=s.failure_reason,
            created_at=s.created_at,
            paid_at=s.paid_at,
            ended_at=s.ended_at,
            transfers=[TransferOut.of(a) for a in attempts] if attempts is not None else None,
        )


class OutcomeOut(BaseModel):
    payee_id: uuid.UUID
    created: bool
    waiting: str | None = Field(
        description="Why nothing was settled: not_payable, community_suspended, "
        "community_not_found, community_record_invalid, community_directory_unavailable, "
        "needs_new_bank_details, nothing_payable, below_minimum"
    )
    available_paise: int
    settlement: SettlementOut | None

    @classmethod
    def of(cls, o: Outcome) -> OutcomeOut:
        return cls(
            payee_id=o.payee_id,
            created=o.created,
            waiting=o.waiting,
            available_paise=o.available_paise,
            settlement=SettlementOut.of(o.settlement) if o.settlement else None,
        )


class RunOut(BaseModel):
    run_id: str
    cut_off: datetime
    outcomes: list[OutcomeOut]


class SettlementPage(BaseModel):
    data: list[SettlementOut]
    next_cursor: str | None
