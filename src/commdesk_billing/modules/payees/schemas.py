"""Request and response bodies of the payees' API. An account number is accepted in a
request and never appears in a response (only its mask)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from commdesk_billing.modules.payees.model import (
    Payee,
    PayeeKind,
    PayeeStatus,
    PayoutAccount,
    PayoutMethod,
    Verification,
)
from commdesk_billing.modules.payees.service import AccountRequest
from commdesk_billing.security.text import StrictInput

SubjectIdPattern = r"^[A-Za-z0-9_-]{1,64}$"
# Cashfree's beneficiary names: letters and spaces (one between words), at most 100.
HolderPattern = r"^[A-Za-z]+( [A-Za-z]+)*$"
IfscPattern = r"^[A-Z]{4}0[A-Z0-9]{6}$"
AccountNumberPattern = r"^[0-9]{9,18}$"
# At most 100 in all (the column); the handle after `@` at most 50, so the mask (two of the
# handle, at most 8 X, `@`, the handle after it) fits its 64.
VpaPattern = r"^[A-Za-z0-9._-]{2,50}@[A-Za-z][A-Za-z0-9]{1,49}$"

Holder = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=100,
        pattern=HolderPattern,
        description="As the bank holds it: letters and single spaces (Cashfree's rule)",
    ),
]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=500)]


class PayeeCreate(StrictInput):
    kind: PayeeKind
    subject_id: Annotated[
        StrictStr,
        Field(pattern=SubjectIdPattern, description="The community's id, or the partner's"),
    ]
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=200)]

    @field_validator("display_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError("display_name is printable text without outer spaces")
        return value


class BankAccountIn(StrictInput):
    method: Literal["bank"]
    account_holder: Holder
    account_number: Annotated[
        StrictStr, Field(pattern=AccountNumberPattern, description="9-18 digits")
    ]
    ifsc: Annotated[StrictStr, Field(pattern=IfscPattern, description="e.g. HDFC0001234")]

    def request(self) -> AccountRequest:
        return AccountRequest(
            PayoutMethod.bank, self.account_holder, number=self.account_number, ifsc=self.ifsc
        )


class UpiAccountIn(StrictInput):
    method: Literal["upi"]
    account_holder: Holder
    vpa: Annotated[StrictStr, Field(pattern=VpaPattern, max_length=100, description="name@bank")]

    def request(self) -> AccountRequest:
        # A VPA is case-insensitive: one spelling, so the same VPA is the same account.
        return AccountRequest(PayoutMethod.upi, self.account_holder, vpa=self.vpa.lower())


PayoutAccountIn = Annotated[BankAccountIn | UpiAccountIn, Field(discriminator="method")]


class StatusChange(StrictInput):
    reason: Reason


class PayeeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c2b9e-4d3a-4e8f-9b7c-1a2d3e4f5a6b",
                    "kind": "partner",
                    "subject_id": "acme-referrals",
                    "display_name": "Acme",
                    "status": "active",
                    "payable_account": "partner:acme-referrals:payable",
                    "created_at": "2026-12-07T10:00:00Z",
                    "updated_at": "2026-12-07T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    kind: PayeeKind
    subject_id: str
    display_name: str
    status: PayeeStatus
    payable_account: str = Field(description="The ledger account of what is owed to it")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: Payee) -> PayeeOut:
        return cls(
            id=p.id,
            kind=p.kind,
            subject_id=p.subject_id,
            display_name=p.display_name,
            status=p.status,
            payable_account=p.payable_code,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class PayeePage(BaseModel):
    data: list[PayeeOut]
    next_cursor: str | None


class VerificationOut(BaseModel):
    status: Verification
    verified_by: Literal["bank_account_verification", "beneficiary"] = Field(
        description="How: a bank account by Cashfree's bank-account verification with a name "
        "match; a VPA only by Cashfree accepting it as a beneficiary (no name match)"
    )
    name_match_result: str | None = Field(
        description="Cashfree's, e.g. DIRECT_MATCH; always null for a VPA"
    )
    name_match_score: str | None = Field(description="0.00-100.00, as Cashfree reports it")
    name_at_bank: str | None = Field(
        description="The name the bank holds; of a failed verification shown to "
        "finance_admin only (it would tell anyone whose account a number is)"
    )
    reference: str | None = Field(description="Cashfree's verification reference")
    detail: str | None = Field(description="Why it failed")
    verified_at: datetime | None


class PayoutAccountOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "payee_id": "6f1c2b9e-4d3a-4e8f-9b7c-1a2d3e4f5a6b",
                    "version": 2,
                    "method": "bank",
                    "account_holder": "Asha Verma",
                    "account_mask": "XXXXXXXXXXX1191",
                    "ifsc": "YESB0000262",
                    "verification": {
                        "status": "verified",
                        "verified_by": "bank_account_verification",
                        "name_match_result": "DIRECT_MATCH",
                        "name_match_score": "100.00",
                        "name_at_bank": "ASHA VERMA",
                        "reference": "34512",
                        "detail": None,
                        "verified_at": "2026-12-07T10:00:02Z",
                    },
                    "beneficiary_registered": True,
                    "payouts_blocked_until": "2026-12-09T10:00:02Z",
                    "payable_now": False,
                    "created_by": "usr_finance_01",
                    "created_at": "2026-12-07T10:00:02Z",
                }
            ]
        }
    )

    payee_id: uuid.UUID
    version: int
    method: PayoutMethod
    account_holder: str
    account_mask: str = Field(description="The number (or VPA) masked: never shown whole")
    ifsc: str | None
    verification: VerificationOut
    beneficiary_registered: bool
    payouts_blocked_until: datetime = Field(description="Cooling-off: no payout before it")
    payable_now: bool = Field(description="Would a settlement pay this account now")
    created_by: str
    created_at: datetime

    @classmethod
    def of(
        cls, a: PayoutAccount, payee: Payee, now: datetime, *, finance: bool = False
    ) -> PayoutAccountOut:
        """`finance`: the answer is finance_admin's alone (a GET), so the name at the bank
        of a failed verification may be in it. Never so for an answer a key stores."""
        shown = a.verification_status is Verification.verified or finance
        return cls(
            payee_id=a.payee_id,
            version=a.version,
            method=a.method,
            account_holder=a.account_holder,
            account_mask=a.account_mask,
            ifsc=a.ifsc,
            verification=VerificationOut(
                status=a.verification_status,
                verified_by=(
                    "bank_account_verification" if a.method is PayoutMethod.bank else "beneficiary"
                ),
                name_match_result=a.name_match_result,
                name_match_score=(
                    f"{a.name_match_score:.2f}" if a.name_match_score is not None else None
                ),
                name_at_bank=a.name_at_bank if shown else None,
                reference=a.verification_ref,
                detail=a.verification_detail,
                verified_at=a.verified_at,
            ),
            beneficiary_registered=a.beneficiary_id is not None,
            payouts_blocked_until=a.payouts_blocked_until,
            payable_now=payee.status is PayeeStatus.active and a.payable_at(now),
            created_by=a.created_by,
            created_at=a.created_at,
        )
