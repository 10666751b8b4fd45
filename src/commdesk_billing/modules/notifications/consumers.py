"""`notifications.billing`: every event of `catalog.CATALOG` becomes a notification, its
deliveries recorded in the consumer's transaction (the scheduler sends them)."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.notifications import service
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError


class BillingNotifications:
    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            await service.record(conn, envelope)
        except ValidationError as exc:
            # Which fields and why, never their values (they may be an address or a URL).
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise PermanentError(f"{envelope.type} payload is not valid: {problems}") from exc
        except (service.UnknownEvent, service.UnknownRecipient) as exc:
            raise PermanentError(str(exc)) from exc
