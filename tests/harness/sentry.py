"""A loopback Sentry: takes `POST /api/<project>/envelope/` (maybe gzipped) as sentry-sdk
sends it, and keeps each raw body and the events in it."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The items of an envelope: (item header, payload). The first line is the envelope's
    own header; an item's payload is `length` bytes when its header says, else one line."""
    items: list[tuple[dict[str, Any], bytes]] = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((header, payload))
    return items


@dataclass
class SentryReceiver:
    project: str = "1"
    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dsn(self) -> str:
        return f"http://examplepublickey@127.0.0.1:{self.port}/{self.project}"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            bodies = list(self.bodies)
        return [
            json.loads(payload)
            for body in bodies
            for header, payload in parse_envelope(body)
            if header.get("type") == "event"
        ]

    def raw(self) -> bytes:
        with self.lock:
            return b"\n".join(self.bodies)


@contextmanager
def sentry_receiver() -> Iterator[SentryReceiver]:
    receiver = SentryReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != f"/api/{receiver.project}/envelope/":
                self.send_error(404)
                return
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            with receiver.lock:
                receiver.bodies.append(body)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
