"""How the long-running processes run: the event loop, and the garbage collector once started.

- **uvloop.** The API runs on uvicorn, which picks uvloop by itself; the worker and the
  scheduler call `run`, which does the same (uvloop comes with `uvicorn[standard]`; without
  it, the standard loop). Every message a worker handles is a few dozen loop callbacks
  (the broker's frames, the database's round trips, timers), which uvloop runs in C.
- **A settled heap.** A started process holds a few hundred thousand objects that live as
  long as it does (modules, the routing table, pydantic and SQLAlchemy's compiled caches,
  the app). Every full collection walks all of them again: about 0.1 s of CPU each on the
  development machine. `settle_heap` moves them to the collector's permanent generation
  once start-up is over (`gc.freeze`), so collections walk only what was made since; and it
  raises the youngest generation's threshold, so a burst of short-lived objects (a message's
  envelope, a request's models) is mostly freed by reference counting before a collection
  ever looks at it. Garbage that is a cycle is still collected, only less often.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# CPython's default is (700, 10, 10): a young collection every 700 net allocations of
# container objects, which a busy worker reaches thousands of times a second.
YOUNG_THRESHOLD = 20_000


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed with uvicorn[standard] on Linux
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Call once the process has started (its engine, clients and caches built)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
