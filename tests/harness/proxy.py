"""A TCP proxy on loopback in front of a real service, which a test turns into a fault.

A worker pointed at the proxy talks to the real broker until the test says otherwise:
`cut("wedge")` drops every live connection and makes new ones hang (TCP accepted, never a
byte back: a wedged broker); `cut("refuse")` drops them and closes new ones at once (a
broker that is down); `heal()` forwards again. The process under test sees exactly what it
would see in production — its connections die and its reconnects fail — while the real
broker, shared with other runs, is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["forward", "wedge", "refuse"]


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._mode: Mode = "forward"
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted in any mode: proof a client kept trying

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def mode(self) -> Mode:
        return self._mode

    def url(self, base: str) -> str:
        """`base` (an amqp:// URL of the real broker) with its address replaced by ours."""
        parts = urlsplit(base)
        creds = parts.netloc.rpartition("@")[0]
        netloc = f"{creds}@127.0.0.1:{self.port}" if creds else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_links()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def cut(self, then: Mode) -> None:
        """Every live connection dies now; new ones behave as `then` says."""
        self._mode = then
        await self._drop_links()

    def heal(self) -> None:
        self._mode = "forward"

    async def _drop_links(self) -> None:
        links = list(self._links)
        for task in links:
            task.cancel()
        for task in links:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)  # type: ignore[arg-type]
        try:
            if self._mode == "refuse":
                return
            if self._mode == "wedge":
                while await reader.read(4096):  # swallow everything, answer nothing
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # Only `cut` cancels a link; ending quietly keeps asyncio's server from logging
            # the cancellation as the callback's error.
            pass
        finally:
            self._links.discard(task)  # type: ignore[arg-type]
            writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()
    dst.close()


@contextlib.asynccontextmanager
async def fault_proxy(url: str) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the service at `url` (host and port taken from it)."""
    parts = urlsplit(url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
