"""A CommDesk user as billing knows them: the JWT subject, and what invoices print."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    external_id: str  # the JWT `sub` CommDesk issues
    email: str | None
    name: str | None
    state_code: str | None  # GST state (two digits); decides CGST+SGST or IGST
