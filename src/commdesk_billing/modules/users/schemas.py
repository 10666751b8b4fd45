"""Request and response bodies of the billing profile."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StrictStr, field_validator, model_validator

from commdesk_billing.modules.tax import gstin as gstins
from commdesk_billing.modules.users.profiles import BillingProfile
from commdesk_billing.security.text import StrictInput

# GST state codes: 01-38 (38 = Ladakh) and 97 (other territory).
StateCode = Annotated[StrictStr, Field(pattern=r"^(0[1-9]|[12][0-9]|3[0-8]|97)$")]


class BillingProfileIn(StrictInput):
    legal_name: Annotated[StrictStr, Field(min_length=1, max_length=200)] = Field(
        description="The name printed as the recipient on tax invoices (a business's "
        "registered name when a GSTIN is given)",
        examples=["Acme Communities Private Limited"],
    )
    address_line1: Annotated[StrictStr, Field(min_length=1, max_length=200)] = Field(
        examples=["4th Floor, 12 MG Road"]
    )
    address_line2: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    city: Annotated[StrictStr, Field(min_length=1, max_length=100)] = Field(examples=["Pune"])
    postal_code: Annotated[StrictStr, Field(pattern=r"^[1-9][0-9]{5}$")] = Field(
        description="The 6-digit PIN code", examples=["411001"]
    )
    state_code: StateCode = Field(
        description="GST state code of the address (place of supply)", examples=["27"]
    )
    gstin: StrictStr | None = Field(
        None,
        description="A registered business's GSTIN (15 characters, its check character and "
        "state verified): invoices then name it and count as B2B",
        examples=["27AAPFU0939F1ZV"],
    )

    @field_validator("legal_name", "address_line1", "address_line2", "city")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        if value is not None and value != value.strip():
            raise ValueError("no leading or trailing spaces")
        return value

    @field_validator("gstin")
    @classmethod
    def _valid_gstin(cls, value: str | None) -> str | None:
        if value is not None and (why := gstins.problem(value)) is not None:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _gstin_in_state(self) -> BillingProfileIn:
        if self.gstin is not None and gstins.state_of(self.gstin) != self.state_code:
            raise ValueError(
                f"the GSTIN is registered in state {gstins.state_of(self.gstin)}, "
                f"not {self.state_code}: the state must be the registration's"
            )
        return self


class BillingProfileOut(BaseModel):
    legal_name: str
    address_line1: str
    address_line2: str | None
    city: str
    postal_code: str
    state_code: str
    gstin: str | None
    registered: bool = Field(description="A GSTIN is on file: invoices are B2B")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: BillingProfile) -> BillingProfileOut:
        return cls(
            legal_name=p.legal_name,
            address_line1=p.address_line1,
            address_line2=p.address_line2,
            city=p.city,
            postal_code=p.postal_code,
            state_code=p.state_code,
            gstin=p.gstin,
            registered=p.gstin is not None,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )
