"""The one message envelope every queue carries, validated on receipt: its text must be
storable (`security/text.py`), its time inside the window of every outside timestamp
(`security/timestamps.py`), its JSON no deeper than a request body may be."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError

from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH, too_deep
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp
from commdesk_billing.telemetry.context import current_traceparent

TypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,99}$")]


class InvalidMessage(Exception):
    """A body that is not a valid envelope: it goes to the dead-letter queue at once."""


class Envelope(StrictInput):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    type: TypeName
    version: Annotated[int, Field(ge=1, le=1000)] = 1
    occurred_at: Timestamp
    correlation_id: Annotated[str, Field(max_length=200)] | None = None
    # W3C trace context of whatever produced the event.
    traceparent: Annotated[str, Field(max_length=128)] | None = None
    attempt: Annotated[int, Field(ge=1, le=10_000)] = 1
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    def next_attempt(self) -> Envelope:
        return self.model_copy(update={"attempt": self.attempt + 1})


def new_envelope(
    message_type: str,
    payload: dict[str, Any],
    *,
    version: int = 1,
    correlation_id: str | None = None,
) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type=message_type,
        version=version,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation_id,
        traceparent=current_traceparent(),
        payload=payload,
    )


def decode(body: bytes) -> Envelope:
    if len(body) > 1_000_000:
        raise InvalidMessage("message body over 1 MB")
    if too_deep(body):
        raise InvalidMessage(f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidMessage(f"body is not JSON: {exc}") from exc
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidMessage(f"not a valid envelope: {problems}") from exc
