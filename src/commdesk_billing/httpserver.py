"""How the API is served: uvicorn with no `server` banner, and a deadline for request heads.

uvicorn has no timeout for reading a request's line and headers: a client that opens a
connection and sends one header byte every few seconds (slowloris), or nothing at all,
holds a connection and its memory for as long as it likes, and a few thousand such clients
exhaust the process. `GuardedHttpProtocol` gives every request head a deadline, counted
from the connection's opening for its first request and from a request's first byte for
the next ones on a kept-alive connection: when it passes, the connection is answered 408
and closed. A head that grows past `MAX_HEAD_BYTES` is answered 431 and closed.

`server_config` is the one place a uvicorn configuration for the API is made: the CLI
(`commdesk-billing api`) and the test harness both use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from commdesk_billing.config import Settings

log = logging.getLogger("uvicorn.error")

DEFAULT_HEADER_TIMEOUT_S = 10.0
# Our largest legitimate head is a few KB (a JWT, a traceparent); 64 KiB is generous.
MAX_HEAD_BYTES = 64 * 1024

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound on request heads."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s: float = getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def _start_head(self) -> None:
        if self._head_deadline is None:
            self._head_bytes = 0
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _end_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse(self, answer: bytes, event: str) -> None:
        self._end_head()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still being written: writing ours now
            # would cut into it. The connection closes once that response is complete.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        log.warning("%s client=%s", event, self.client[0] if self.client else None)
        self.transport.write(answer)
        self.transport.close()

    def _head_late(self) -> None:
        self._head_deadline = None
        self._refuse(_TIMEOUT, "http.head.timeout")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first request's head must arrive within the bound, counted from the connection.
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = self._head_deadline is not None
        super().data_received(data)
        if in_head and self._head_deadline is not None:
            # The whole chunk went into a head that is still not complete.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(_TOO_LARGE, "http.head.too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A next request on a kept-alive connection: its head has the same bound.
        self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()


class ServerConfig(uvicorn.Config):
    """A uvicorn configuration that carries the head deadline to `GuardedHttpProtocol`
    (a module-level class: it is pickled to the worker processes of `--workers N`)."""

    def __init__(
        self, app: Any, *, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s


def server_config(app: Any, settings: Settings, **kwargs: Any) -> ServerConfig:
    """The API's uvicorn configuration. No `server` header (it names our software and its
    version to whoever asks); `Date` stays, as HTTP asks of a server with a clock. Proxy
    headers are not read by uvicorn: `security/addresses.py` reads X-Forwarded-For, from
    trusted proxies only."""
    options: dict[str, Any] = {
        "http": GuardedHttpProtocol,
        "server_header": False,
        "date_header": True,
        "proxy_headers": False,
        "access_log": False,
        # uvicorn's own records go through the root logger: JSON, labelled and scrubbed
        # like ours (telemetry/logging.py), not its plain-text handlers.
        "log_config": None,
        "timeout_keep_alive": settings.http_keep_alive_s,
        **kwargs,
    }
    return ServerConfig(app, header_timeout_s=settings.http_header_timeout_s, **options)


def run(config: ServerConfig) -> None:
    """Serve until stopped, in `config.workers` processes (as `uvicorn.run` does)."""
    from uvicorn.supervisors import Multiprocess

    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    config.load_app()
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: the app or its lifespan failed
