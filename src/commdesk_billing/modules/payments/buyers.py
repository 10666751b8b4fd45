"""Who the buyer of an order is for GST: their state (the place of supply, which decides
CGST+SGST or IGST) and, from their billing profile, the details their invoice prints."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import BuyerStateConflict
from commdesk_billing.modules.users import profiles
from commdesk_billing.modules.users import service as users


@dataclass(frozen=True)
class OrderBuyer:
    state_code: str
    details: profiles.BuyerDetails | None  # None: no billing profile (a B2C invoice)

    def metadata(self) -> dict[str, Any]:
        """What the payment keeps (`metadata.buyer`): its invoice prints this."""
        return {"buyer": self.details.snapshot()} if self.details is not None else {}


async def resolve(
    conn: AsyncConnection, settings: Settings, user_id: uuid.UUID, requested_state: str | None
) -> OrderBuyer:
    """A registered business (a GSTIN on file) is supplied in its GSTIN's state, whatever
    else is asked (an order naming another state is refused); otherwise the state the order
    names, else the profile's, else the user's, else ours."""
    details = await profiles.buyer_on_file(conn, user_id)
    if details is not None and details.gstin is not None:
        if requested_state is not None and requested_state != details.state_code:
            raise BuyerStateConflict(
                f"the billing profile's GSTIN is registered in state {details.state_code}; "
                f"an order for it cannot be supplied in {requested_state}",
                profile_state=details.state_code,
            )
        return OrderBuyer(details.state_code, details)
    state = (
        requested_state
        or (details.state_code if details is not None else None)
        or (await users.get_user(conn, user_id)).state_code
        or settings.seller_state_code
    )
    return OrderBuyer(state, details)
