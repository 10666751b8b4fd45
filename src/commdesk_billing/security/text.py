"""Text that PostgreSQL cannot store is refused at the edge, as a 4xx, not a 500.

Every model that parses outside input checks every string in it, dict keys included: our
API bodies and queue payloads (`StrictInput`), the queue envelope (`queues/envelope.py`),
Cashfree's answers and webhooks (`gateway/models.py`; the webhook receiver also checks the
whole signed document before it reads anything). Headers and
query strings are checked where they are read (`sane_header`, the Idempotency-Key pattern,
the cursor decoders)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH


def unstorable_text(value: Any, depth: int = 0) -> str | None:
    """Why `value` (or any string inside it, keys included) cannot be stored, or None.

    PostgreSQL text refuses NUL, and UTF-8 has no encoding for lone surrogates, both of
    which JSON can carry (`\\u0000`, `\\ud800`).
    """
    if depth > MAX_JSON_DEPTH:  # the same bound the parser enforced on the way in
        return "nested too deeply"
    if isinstance(value, str):
        if "\x00" in value:
            return "text contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text contains an unpaired surrogate"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = unstorable_text(k, depth + 1) or unstorable_text(v, depth + 1)
            if found:
                return found
    if isinstance(value, list | tuple):
        for item in value:
            found = unstorable_text(item, depth + 1)
            if found:
                return found
    return None


def refuse_unstorable(data: Any) -> Any:
    """`data` unchanged, or ValueError (in a validator: a validation error) saying why not."""
    problem = unstorable_text(data)
    if problem:
        raise ValueError(problem)
    return data


def sane_header(value: str | None, max_length: int = 128) -> str | None:
    """A header value worth keeping (a request id, say): printable and short, else None."""
    if value is None or not 0 < len(value) <= max_length or not value.isprintable():
        return None
    return value


class StrictInput(BaseModel):
    """Base of every model that parses outside input (API bodies, queue payloads): unknown
    fields are refused, and so is text PostgreSQL could not store."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return refuse_unstorable(data)
