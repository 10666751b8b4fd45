"""Real HTTP servers for the sandbox tests: uvicorn in a background thread on a free port, and a
webhook receiver that records exactly what arrived.

Servers run in their own threads (each with its own event loop), so blocking test code such as
the browser driver cannot stall them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class ServerThread:
    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """POST /hooks/{name} records the request and answers the next planned status (else 200)."""

    url: str = ""
    _got: dict[str, list[Received]] = field(default_factory=dict)
    _plans: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, name: str, *, answers: list[int] | None = None) -> str:
        with self._lock:
            self._plans[name] = list(answers or [])
        return f"{self.url}/hooks/{name}"

    def got(self, name: str) -> list[Received]:
        with self._lock:
            return list(self._got.get(name, []))

    async def wait_for(self, name: str, count: int, within_s: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + within_s
        while len(self.got(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: {len(self.got(name))} webhooks, wanted {count}")
            await asyncio.sleep(0.02)
        return self.got(name)

    async def _endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        with self._lock:
            self._got.setdefault(name, []).append(
                Received(dict(request.headers), body, time.monotonic())
            )
            plan = self._plans.get(name) or []
            status = plan.pop(0) if plan else 200
        return Response(b"ok", status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks/{name}", self._endpoint, methods=["POST"])])
