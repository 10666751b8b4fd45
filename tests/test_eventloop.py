"""The long-running processes' event loop and heap (`eventloop.py`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from commdesk_billing import eventloop


def test_run_is_on_uvloop() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(which()).startswith("uvloop")


def test_a_settled_heap_is_frozen_and_collected_less_often() -> None:
    # In a process of its own: the test runner's collector is left as it is.
    script = textwrap.dedent("""
        import gc
        from commdesk_billing import eventloop
        assert gc.get_freeze_count() == 0
        eventloop.settle_heap()
        assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == eventloop.YOUNG_THRESHOLD
        # A cycle made afterwards is still collected.
        import weakref
        class Node: pass
        a, b = Node(), Node()
        a.b, b.a = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
