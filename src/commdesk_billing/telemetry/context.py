"""Trace context carried from HTTP requests into the events they cause."""

from __future__ import annotations

import re
from contextvars import ContextVar

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_current: ContextVar[str | None] = ContextVar("traceparent", default=None)


def set_traceparent(value: str | None) -> None:
    _current.set(value if value and _TRACEPARENT.match(value) else None)


def current_traceparent() -> str | None:
    return _current.get()
