"""W3C trace context (`traceparent`) in and out of OpenTelemetry's current context.

The current span is OpenTelemetry's: a real span where tracing is on (telemetry/tracing.py),
or, where it is off, the caller's context carried on unchanged (a non-recording span), so
the events a request announces, and the logs it writes, still name the caller's trace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse(value: str | bytes | None) -> SpanContext | None:
    """The remote span a `traceparent` names; None for anything malformed or all-zero
    (version 00 only: it is the one version there is)."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match[3], 16)))


def parent_context(value: str | bytes | None) -> otel_context.Context | None:
    """An OpenTelemetry context whose span is the remote parent `value` names, or None."""
    remote = parse(value)
    return trace.set_span_in_context(NonRecordingSpan(remote)) if remote is not None else None


def format_traceparent(span_context: SpanContext) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def current_traceparent() -> str | None:
    """The `traceparent` of the current span (what an event announced now carries on)."""
    span_context = trace.get_current_span().get_span_context()
    return format_traceparent(span_context) if span_context.is_valid else None


def current_ids() -> tuple[str, str] | None:
    """Trace and span id of the current span, as hex (for logs and error reports)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


@contextmanager
def remote_parent(value: str | bytes | None) -> Iterator[None]:
    """Within the block, the current span is the remote one `value` names (nothing changes
    for a missing or malformed value). Used where tracing is off: logs and announced events
    still carry the caller's trace."""
    ctx = parent_context(value)
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
