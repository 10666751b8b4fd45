"""The per-key micro-batcher on its own (no database): who runs when, and with whom."""

from __future__ import annotations

import asyncio

import pytest

from commdesk_billing.modules.wallet.batcher import Batcher


class Recorder:
    """A run that records its batches and waits for the test to let each one finish."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.gate = asyncio.Event()
        self.fail: BaseException | None = None

    async def run(self, key: str, items: list[int]) -> list[int | BaseException]:
        self.batches.append((key, list(items)))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_key_runs_at_once_and_the_queue_goes_together_next() -> None:
    rec = Recorder()
    batcher: Batcher[str, int, int] = Batcher(rec.run, max_batch=3)
    first = asyncio.ensure_future(batcher.submit("w", 0))
    await _settle()
    assert rec.batches == [("w", [0])]  # no waiting for company
    queued = [asyncio.ensure_future(batcher.submit("w", i)) for i in (2, 4, 6, 8, 10)]
    other = asyncio.ensure_future(batcher.submit("v", 12))  # another key is not held up
    await _settle()
    assert batcher.queued("w") == 5 and rec.batches[-1] == ("v", [12])
    rec.gate.set()
    assert await first == 0
    assert [await q for q in queued] == [20, 40, 60, 80, 100]
    assert await other == 120
    # Capped at three a batch: the five that queued went as two batches, in order.
    assert [b for k, b in rec.batches if k == "w"] == [[0], [2, 4, 6], [8, 10]]
    assert not batcher.busy("w") and not batcher.busy("v")


async def test_each_item_gets_its_own_outcome_and_a_failed_run_fails_its_batch_only() -> None:
    rec = Recorder()
    batcher: Batcher[str, int, int] = Batcher(rec.run, max_batch=10)
    first = asyncio.ensure_future(batcher.submit("w", 1))
    await _settle()
    queued = [asyncio.ensure_future(batcher.submit("w", i)) for i in (2, 3)]
    await _settle()
    rec.gate.set()
    with pytest.raises(ValueError, match="odd 1"):
        await first
    assert await queued[0] == 20
    with pytest.raises(ValueError, match="odd 3"):
        await queued[1]

    rec.gate.clear()
    rec.fail = RuntimeError("database")
    lead = asyncio.ensure_future(batcher.submit("w", 4))
    await _settle()
    behind = [asyncio.ensure_future(batcher.submit("w", i)) for i in (6, 8)]
    await _settle()
    rec.gate.set()
    for f in (lead, *behind):
        with pytest.raises(RuntimeError, match="database"):
            await f
    assert not batcher.busy("w")
    rec.fail = None
    assert await batcher.submit("w", 10) == 100  # and the key works again


async def test_a_request_cancelled_while_queued_is_not_run() -> None:
    rec = Recorder()
    batcher: Batcher[str, int, int] = Batcher(rec.run, max_batch=10)
    first = asyncio.ensure_future(batcher.submit("w", 0))
    await _settle()
    gone = asyncio.ensure_future(batcher.submit("w", 2))
    kept = asyncio.ensure_future(batcher.submit("w", 4))
    await _settle()
    gone.cancel()
    rec.gate.set()
    assert await first == 0 and await kept == 40
    assert rec.batches == [("w", [0]), ("w", [4])]


def test_a_batch_needs_room_for_one() -> None:
    async def run(key: str, items: list[int]) -> list[int | BaseException]:
        return list(items)

    with pytest.raises(ValueError):
        Batcher(run, max_batch=0)


async def test_closing_waits_for_the_batch_in_flight() -> None:
    """The API's shutdown closes the batcher before it disposes of the pool: a drain's
    transaction is let finish, even when the request that started the key has gone."""
    rec = Recorder()
    batcher: Batcher[str, int, int] = Batcher(rec.run, max_batch=10)
    first = asyncio.ensure_future(batcher.submit("w", 0))
    await _settle()
    queued = asyncio.ensure_future(batcher.submit("w", 2))
    await _settle()
    first.cancel()  # its client went away: the queued request is handed to a drain
    await _settle()
    assert rec.batches == [("w", [0]), ("w", [2])]
    closing = asyncio.ensure_future(batcher.aclose())
    await _settle()
    assert not closing.done()  # the drain's run is still in flight
    rec.gate.set()
    await closing
    assert await queued == 20 and not batcher.busy("w")
