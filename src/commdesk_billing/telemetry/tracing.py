"""OpenTelemetry traces, exported over OTLP/HTTP in batches.

One tracer provider per process role (`api`, `worker`, `scheduler`), each with its own
`service.name`, so a trace shows which process did what even when the roles share a process
(the tests' stacks). Off while BILLING_OTEL_EXPORTER_OTLP_ENDPOINT is unset: `tracer()` is
None, no span is made, and callers skip the work (the cost is one `is None` test).
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer

from commdesk_billing.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_PREFIX = "commdesk-billing"
_INSTRUMENTATION = "commdesk_billing"

_lock = threading.Lock()
_providers: dict[tuple[str, str, str, float], TracerProvider] = {}


def version() -> str:
    try:
        return metadata.version("commdesk-billing")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0.0.0"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL from a collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT
    is given: the signal's path is added) or from the full traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def tracer(settings: Settings, service: str) -> Tracer | None:
    """The tracer of this process role, or None while tracing is off. Providers are made
    once per role and endpoint and live as long as the process (flushed at exit)."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None:
        return None
    ratio = settings.otel_traces_sample_ratio
    key = (service, traces_url(endpoint), settings.env.value, ratio)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _provider(service, key[1], settings.env.value, ratio)
            _providers[key] = provider
    return provider.get_tracer(_INSTRUMENTATION, version())


def _provider(service: str, url: str, env: str, ratio: float) -> TracerProvider:
    # Imported here: a process with tracing off never loads the SDK, the exporter or
    # protobuf (a second of start-up on a busy machine).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"{SERVICE_PREFIX}-{service}",
                "service.namespace": SERVICE_PREFIX,
                "service.version": version(),
                "deployment.environment.name": env,
            }
        ),
        # A caller's decision is kept (a sampled request stays sampled all the way through
        # the queues); new traces are kept at the configured ratio.
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    # Batched: a span costs a queue append on the request path; a background thread exports.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    return provider


def flush(timeout_ms: int = 5_000) -> None:
    """Export every finished span now (a process stopping, a test reading the collector)."""
    with _lock:
        providers = list(_providers.values())
    for provider in providers:
        provider.force_flush(timeout_ms)
