"""A MongoDB-wire server on loopback, as a child process: nx-27017 (SQLite underneath).

Production reads CommDesk's MongoDB (Atlas) at BILLING_MONGODB_URL. The tests, the demo and
`commdesk-billing dev` have no MongoDB of their own, so where no URL is given they start this
instead and talk to it with the same PyMongo client. It is installed with the project's
`local` dependency group (`bash scripts/bootstrap.sh`), never needed by a deployment.

The server keeps one SQLite file per database in `data_dir` (its `--data-dir` mode, so a
database can be dropped alone), and its pid and log files there too: its defaults are fixed
paths in /tmp, which two servers on one machine would fight over.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

# `python -c` rather than `-m nx_27017.nx_27017` (which warns that runpy found the module
# already imported) or the `nx-27017` script (which may not be on PATH).
_ENTRY = "import sys; from nx_27017.nx_27017 import main; sys.exit(main())"


class LocalMongoError(RuntimeError):
    pass


class LocalMongo:
    """`async with LocalMongo(dir, port=…) as server:` … `server.url`. `stop()` and `start()` again
    (same port, same data) let tests take MongoDB away and bring it back."""

    def __init__(self, data_dir: Path, *, port: int) -> None:
        # Pinned now: a relative directory must not move with a later chdir.
        self.data_dir = data_dir.resolve()
        self.port = port
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, timeout_s: float = 20.0) -> None:
        """Start it and wait until it answers a ping."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A pid file left by a killed server would name a process that may be someone else.
        (self.data_dir / "nx-27017.pid").unlink(missing_ok=True)
        with (self.data_dir / "stderr.log").open("ab") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _ENTRY,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--pid-file",
                str(self.data_dir / "nx-27017.pid"),
                "--log-file",
                str(self.data_dir / "nx-27017.log"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            await self._wait_ready(timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, timeout_s: float) -> None:
        # The port first (cheap to poll), then one ping: listening is not yet answering.
        deadline = time.monotonic() + timeout_s
        while not await self._listening():
            if self._process is None or self._process.returncode is not None:
                raise LocalMongoError(f"nx-27017 exited at start: {self._stderr_tail()}")
            if time.monotonic() > deadline:
                raise LocalMongoError(f"nx-27017 did not listen within {timeout_s:g} s")
            await asyncio.sleep(0.02)
        left_ms = max(100, int((deadline - time.monotonic()) * 1000))
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.url, timeoutMS=left_ms)
        try:
            await client.admin.command("ping")
        except PyMongoError as exc:
            raise LocalMongoError(f"nx-27017 listens on {self.url} but does not answer") from exc
        finally:
            await client.close()

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _stderr_tail(self) -> str:
        try:
            return (self.data_dir / "stderr.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no output)"

    async def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with `kill`, or after 10 s), and wait for it to be gone."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
