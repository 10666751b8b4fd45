"""Unexpected errors to Sentry: off while BILLING_SENTRY_DSN is unset.

What is sent is what a developer needs and nothing a customer could be named by: no default
PII (addresses, cookies, users), no request bodies, no local variables of the frames (they
would hold tokens and card data), and every event passes `redact.scrub` (the same keys and
value patterns as the logs) on its way out. Each event names the OpenTelemetry trace it
happened in (tag `trace_id`, and Sentry's own trace context set to the same ids), so an
error leads to its trace and its logs.
"""

from __future__ import annotations

import threading
from typing import Any

from commdesk_billing.config import Settings
from commdesk_billing.telemetry import context, redact, tracing

_lock = threading.Lock()
_dsn: str | None = None


def enabled() -> bool:
    return _dsn is not None


def before_send(event: Any, hint: Any) -> Any:
    ids = context.current_ids()
    if ids is not None:
        trace_id, span_id = ids
        event.setdefault("tags", {})["trace_id"] = trace_id
        contexts = event.setdefault("contexts", {})
        contexts["trace"] = {**contexts.get("trace", {}), "trace_id": trace_id, "span_id": span_id}
        contexts["otel"] = {"trace_id": trace_id, "span_id": span_id}
    return redact.scrub(event)


def _before_breadcrumb(crumb: Any, hint: Any) -> Any:
    return redact.scrub(crumb)


def init(settings: Settings, service: str) -> bool:
    """Start Sentry for this process (`service`: api, worker, scheduler) when configured.
    Once per process: a second role in the same process (the tests' stacks) keeps the
    client and only its tag changes."""
    global _dsn
    if settings.sentry_dsn is None:
        return False
    # Imported here: a process without Sentry never loads it (a second of start-up on a
    # busy machine).
    import sentry_sdk

    dsn = settings.sentry_dsn.get_secret_value()
    with _lock:
        if _dsn != dsn:
            sentry_sdk.init(
                dsn=dsn,
                environment=settings.env.value,
                release=settings.release or f"commdesk-billing@{tracing.version()}",
                send_default_pii=False,
                include_local_variables=False,
                max_request_body_size="never",
                # Only the default integrations (logging, excepthook, dedupe, ...): the
                # auto-enabled ones would patch every HTTP and database client for
                # breadcrumbs, a cost on each purchase for little we do not log already.
                auto_enabling_integrations=False,
                # Tracing is OpenTelemetry's (telemetry/tracing.py), not Sentry's.
                traces_sample_rate=None,
                before_send=before_send,
                before_breadcrumb=_before_breadcrumb,
            )
            _dsn = dsn
        sentry_sdk.get_global_scope().set_tag("service", service)
    return True


def capture(exc: BaseException) -> None:
    """Report an unexpected exception (in the current trace), if Sentry is on."""
    if _dsn is not None:
        import sentry_sdk

        sentry_sdk.capture_exception(exc)


def flush(timeout_s: float = 5.0) -> None:
    if _dsn is not None:
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout_s)


def close() -> None:
    """Stop reporting (tests that started Sentry end it so)."""
    global _dsn
    with _lock:
        if _dsn is not None:
            import sentry_sdk

            sentry_sdk.get_client().close(timeout=2)
            sentry_sdk.init(dsn=None)
            _dsn = None
