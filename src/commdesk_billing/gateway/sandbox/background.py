"""Background work (timers, webhook deliveries) that the server owns and cancels on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("sandbox")


class Background:
    def __init__(self) -> None:
        # Strong references: the event loop only keeps weak ones, and a collected task is
        # silently lost work (a webhook never sent).
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def later(
        self, delay_s: float, action: Callable[[], Awaitable[None] | None]
    ) -> asyncio.Task[None]:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            result = action()
            if result is not None:
                await result

        return self.spawn(run())

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # a sandbox bug must not kill the loop's other work
            log.exception("sandbox.background.failed")

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
