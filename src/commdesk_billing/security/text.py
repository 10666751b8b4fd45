"""Text that PostgreSQL cannot store is refused at the edge, as a 4xx, not a 500."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def unstorable_text(value: Any, depth: int = 0) -> str | None:
    """Why `value` (or any string inside it, keys included) cannot be stored, or None.

    PostgreSQL text refuses NUL, and UTF-8 has no encoding for lone surrogates, both of
    which JSON can carry (`\\u0000`, `\\ud800`).
    """
    if depth > 20:
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


class StrictInput(BaseModel):
    """Base of every model that parses outside input (API bodies, queue payloads): unknown
    fields are refused, and so is text PostgreSQL could not store."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable_text(data)
        if problem:
            raise ValueError(problem)
        return data
