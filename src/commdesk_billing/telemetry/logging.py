"""Structured logs: one JSON object a line, dotted event names with fields
(`wallet.debit.refused`, reason=...).

Every line carries what Loki labels by (`service`: api, worker, scheduler, sandbox, cli;
`env`; `level`) and, inside a traced request or message, the `trace_id` and `span_id` of
the current span. Every line passes `redact.scrub` last before it is written: no secret,
token, card number, bank account or UPI address reaches a log. The standard library's
loggers (uvicorn, aio-pika, httpx) go through the same processors.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from commdesk_billing.telemetry import context, redact


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ids = context.current_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


def redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    scrubbed: MutableMapping[str, Any] = redact.scrub(dict(event))
    return scrubbed


def _labels(service: str, env: str) -> structlog.types.Processor:
    def add(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", service)
        event.setdefault("env", env)
        return event

    return add


def configure(
    level: str = "INFO", json_logs: bool = True, *, service: str = "cli", env: str = "development"
) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _labels(service, env),
        add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            # Last before rendering: the traceback text is scrubbed too.
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per line (message and newline together): lines of processes sharing a
        # stream never run into one another.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_event,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
