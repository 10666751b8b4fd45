"""A per-key micro-batcher: requests for one key that arrive while that key's work is in
flight go together in the next run.

A busy wallet is bound by its row lock: every transaction on it waits for the one before to
lock, read, write and commit. Debits that share one transaction share that wait. So the
first request for a wallet runs at once, alone, in its own task (no waiting: a wallet that
is not busy pays nothing but a dict lookup); requests that arrive while it runs queue up,
and once it has finished they run together in one call, up to `max_batch` of them; those
arriving meanwhile form the next batch, and so on until the queue is empty. With
`max_batch` 1 there is no batching at all: every request runs at once in its own call.

Only this process's requests meet here; correctness never depends on it (two processes, or
two batches, still serialize on the wallet's row lock). A run answers its requests only after
it returns, i.e. after the transaction committed: a process dying mid-batch has told nobody
that their request succeeded.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

# Runs one batch for one key: one outcome per item, in order. An outcome that is an exception
# is raised in that item's request; an exception raised by the run itself goes to every item.
Run = Callable[[K, list[T]], Awaitable[list[R | BaseException]]]


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    # The request's context (its request id, its trace), for work done on its behalf.
    context: contextvars.Context


@dataclass
class _Key(Generic[T, R]):
    batches: deque[list[_Waiting[T, R]]] = field(default_factory=deque)


class Batcher(Generic[K, T, R]):
    def __init__(self, run: Run[K, T, R], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self._busy: dict[K, _Key[T, R]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def busy(self, key: K) -> bool:
        return key in self._busy

    def queued(self, key: K) -> int:
        """Requests of `key` waiting for the run in flight to finish."""
        state = self._busy.get(key)
        return sum(len(b) for b in state.batches) if state else 0

    async def submit(self, key: K, item: T) -> R:
        if self.max_batch == 1:
            # Batching off: every item its own run at once, however busy its key.
            return self._outcome(await self._run(key, [item]))
        state = self._busy.get(key)
        if state is None:
            # Nothing in flight for the key: run now, in this request's task.
            self._busy[key] = _Key()
            try:
                outcomes = await self._run(key, [item])
            finally:
                self._next(key)
            return self._outcome(outcomes)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(item, future, contextvars.copy_context())
        if state.batches and len(state.batches[-1]) < self.max_batch:
            state.batches[-1].append(waiting)
        else:
            state.batches.append([waiting])
        return await future

    @staticmethod
    def _outcome(outcomes: list[R | BaseException]) -> R:
        (outcome,) = outcomes
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _next(self, key: K) -> None:
        """The run in flight for `key` is over: hand what queued meanwhile to a drain, or
        mark the key idle."""
        state = self._busy[key]
        if not state.batches:
            del self._busy[key]
            return
        # In the first queued request's context: what the drain logs is about its batch.
        task = asyncio.create_task(self._drain(key, state), context=state.batches[0][0].context)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, key: K, state: _Key[T, R]) -> None:
        while state.batches:
            batch = state.batches.popleft()
            # A request cancelled while it waited (its client went away) is not run.
            live = [w for w in batch if not w.future.done()]
            if not live:
                continue
            try:
                outcomes = await self._run(key, [w.item for w in live])
            except Exception as exc:
                for w in live:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            except BaseException:
                # The drain itself is cancelled (the process is stopping): nothing it holds
                # will be answered; whether the batch in flight committed is for the
                # requests' retries (with their keys) to find out.
                for w in live:
                    w.future.cancel()
                self._cancel_queued(key, state)
                raise
            for w, outcome in zip(live, outcomes, strict=True):
                if w.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    w.future.set_exception(outcome)
                else:
                    w.future.set_result(outcome)
        del self._busy[key]

    def _cancel_queued(self, key: K, state: _Key[T, R]) -> None:
        for batch in state.batches:
            for w in batch:
                w.future.cancel()
        state.batches.clear()
        self._busy.pop(key, None)

    async def aclose(self) -> None:
        """Wait for the drains in flight (the process is stopping)."""
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
