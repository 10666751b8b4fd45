"""The worker's and scheduler's own small HTTP server, on loopback: `/metrics` (Prometheus),
`/healthz` (liveness: the process's event loop answers) and `/readyz` (readiness: 200 only
when the process does its job — a worker connected to the broker and consuming — else 503,
with what is missing). Plain asyncio, so it answers as long as the loop runs and needs no
thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from commdesk_billing.telemetry import exposition
from commdesk_billing.telemetry.metrics import PROCESS_READY

log = structlog.get_logger(__name__)

Checks = Callable[[], Mapping[str, bool]]
_REQUEST_LINE_TIMEOUT_S = 5
_MAX_REQUEST_LINE = 8192


def _response(status: int, reason: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HealthServer:
    def __init__(self, port: int, checks: Checks, *, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.checks = checks
        self._server: asyncio.Server | None = None

    def answer(self, path: str) -> bytes:
        if path == "/healthz":
            return _response(200, "OK", b'{"status":"alive"}', "application/json")
        if path == "/readyz":
            checks = dict(self.checks())
            ready = all(checks.values())
            body = json.dumps({"status": "ready" if ready else "not_ready", "checks": checks})
            status, reason = (200, "OK") if ready else (503, "Service Unavailable")
            return _response(status, reason, body.encode(), "application/json")
        if path == "/metrics":
            # The readiness checks as a gauge too, read at scrape time: an alert can say
            # "the worker is not consuming" without anyone polling /readyz.
            for name, ok in self.checks().items():
                PROCESS_READY.labels(name).set(1 if ok else 0)
            return _response(200, "OK", exposition.payload(), CONTENT_TYPE_LATEST)
        return _response(404, "Not Found", b'{"status":"not_found"}', "application/json")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), _REQUEST_LINE_TIMEOUT_S)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            writer.write(
                self.answer(path)
                if path
                else _response(405, "Method Not Allowed", b"", "text/plain")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.info("health.request.dropped", error=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("health.listening", port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
