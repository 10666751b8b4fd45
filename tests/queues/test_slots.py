"""The consumers' transaction slots (`runtime.Slots`): the money path's queues first, then in
arrival order; a waiter cancelled never takes a slot with it."""

from __future__ import annotations

import asyncio

from commdesk_billing.queues.runtime import FIRST_QUEUES, Slots, _priority


async def _order_served(slots: Slots, waiters: list[tuple[str, int]]) -> list[str]:
    served: list[str] = []

    async def one(name: str, priority: int) -> None:
        async with slots.held(priority):
            served.append(name)
            await asyncio.sleep(0)

    tasks = []
    for name, priority in waiters:
        tasks.append(asyncio.create_task(one(name, priority)))
        await asyncio.sleep(0)  # queued in this order
    await asyncio.gather(*tasks)
    return served


async def _taken_with_waiters(*priorities: int) -> tuple[Slots, list[asyncio.Task[None]]]:
    """A single slot, taken, and a waiter of each priority queued for it in that order."""
    slots = Slots(1)
    await slots.acquire(0)
    waiters = [asyncio.create_task(slots.acquire(p)) for p in priorities]
    await asyncio.sleep(0.01)
    return slots, waiters


async def test_the_money_path_first_then_in_order() -> None:
    slots = Slots(1)
    await slots.acquire(1)  # taken: everyone below waits
    waiting = asyncio.create_task(
        _order_served(
            slots,
            [("analytics-1", 1), ("credit-1", 0), ("invoice-1", 1), ("credit-2", 0)],
        )
    )
    await asyncio.sleep(0.01)
    slots.release()
    assert await waiting == ["credit-1", "credit-2", "analytics-1", "invoice-1"]


async def test_a_cancelled_waiter_leaves_its_turn_to_the_next() -> None:
    slots, (cancelled, after) = await _taken_with_waiters(0, 1)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    slots.release()
    await asyncio.wait_for(after, 1)
    slots.release()
    # All free again: two can be taken at once by nobody else waiting.
    await asyncio.wait_for(slots.acquire(1), 1)


async def test_a_waiter_cancelled_as_it_is_served_passes_the_slot_on() -> None:
    slots, (first, second) = await _taken_with_waiters(0, 0)
    slots.release()  # handed to `first`…
    first.cancel()  # …which is cancelled before it runs again
    await asyncio.wait_for(second, 1)
    assert first.cancelled()


def test_which_queues_go_first() -> None:
    assert {"payment.processing", "wallet.credit"} <= FIRST_QUEUES
    assert _priority("wallet.credit") < _priority("analytics.billing")
    assert _priority("invoice.generate") == _priority("webhooks.outbound")


async def test_follow_up_work_is_not_starved_by_a_steady_money_stream() -> None:
    """Money-path waiters arriving without pause must not keep a follow-up waiter out for
    ever: it is served after a bounded number of them (`Slots.MAX_OVERTAKES`)."""
    slots = Slots(1)
    await slots.acquire(0)
    follow_up = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0)
    granted_to_money = 0
    money = [asyncio.create_task(slots.acquire(0))]
    await asyncio.sleep(0)
    for _ in range(200):
        # One more money waiter is always queued before the slot is given back, as a busy
        # money queue's prefetch window keeps it.
        money.append(asyncio.create_task(slots.acquire(0)))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.sleep(0)
        if follow_up.done():
            break
        granted_to_money += 1
    assert follow_up.done(), "the follow-up waiter never got a slot"
    assert granted_to_money <= Slots.MAX_OVERTAKES
    for task in money:
        task.cancel()
