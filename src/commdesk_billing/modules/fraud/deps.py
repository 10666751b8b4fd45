"""What the fraud rules need from an HTTP request: the client's address (behind our trusted
proxies only) and the device the frontend names in `X-Device-Id`."""

from __future__ import annotations

import re

from fastapi import Request

from commdesk_billing.errors import InvalidDeviceId
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.fraud.screening import Context
from commdesk_billing.security import addresses

# The frontend's own identifier (a UUID or a fingerprint hash): visible, no spaces, bounded.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def device_id_of(request: Request) -> str | None:
    values = request.headers.getlist("x-device-id")
    if not values:
        return None
    # One header, one value: two would let a client pick which one a rule reads (HPP).
    if len(values) > 1 or not DEVICE_ID_RE.fullmatch(values[0]):
        raise InvalidDeviceId("X-Device-Id must be one value of 8-128 letters, digits or ._:-")
    return values[0]


def context_of(request: Request) -> Context:
    store: RedisStore | None = getattr(request.app.state, "redis", None)
    return Context(
        ip=addresses.client_ip(request.scope),
        device_id=device_id_of(request),
        store=store,
    )
