"""Counts of what a process sends to PostgreSQL, for benchmarks: off unless
BILLING_DB_STATEMENT_STATS_DIR names a directory.

PostgreSQL here has no `pg_stat_statements` (it needs a server restart to load), and its own
statistics count transactions, not statements. So each process counts its own, client-side:
every statement SQLAlchemy executes (by its first keyword), every BEGIN, COMMIT, ROLLBACK and
savepoint, and every statement run on the bare driver (`engine.on_driver`), with a tally by
statement text; also new connections, and the garbage collector's runs and CPU. SIGUSR1 (and
the process's exit) writes them to `<dir>/<pid>.json`; a benchmark signals before and after
its window and takes the difference.

On, it costs a Python call per statement; off, nothing at all (no event is listened for).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_lock = threading.Lock()
_kinds: Counter[str] = Counter()
_texts: Counter[str] = Counter()
_directory: Path | None = None
_gc_started: dict[int, float] = {}
_SPACE = re.compile(r"\s+")
_VERBS = frozenset({"select", "insert", "update", "delete", "with"})


def directory_from_env() -> Path | None:
    raw = os.environ.get("BILLING_DB_STATEMENT_STATS_DIR")
    return Path(raw) if raw else None


def active() -> bool:
    return _directory is not None


def count(kind: str, text: str | None = None) -> None:
    with _lock:
        _kinds[kind] += 1
        if text is not None:
            # Keyed by the text as it came (a compiled statement's string is the same object
            # every time, its hash cached): tidied only when written out.
            _texts[text] += 1


def _verb(statement: str) -> str:
    word = statement.lstrip()[:6].lower()
    return word if word in _VERBS else "with" if word.startswith("with") else "other"


def _on_gc(phase: str, info: dict[str, int]) -> None:
    """The garbage collector's CPU by generation (`gc_ms_<n>` kinds, in microseconds)."""
    generation = info["generation"]
    if phase == "start":
        _gc_started[generation] = time.process_time()
    elif generation in _gc_started:
        spent = time.process_time() - _gc_started.pop(generation)
        with _lock:
            _kinds[f"gc_us_{generation}"] += round(spent * 1_000_000)
            _kinds[f"gc_runs_{generation}"] += 1


def snapshot() -> dict[str, Any]:
    with _lock:
        kinds, raw = dict(_kinds), dict(_texts)
    texts: Counter[str] = Counter()
    for text, n in raw.items():
        texts[_SPACE.sub(" ", text).strip()[:240]] += n
    return {"pid": os.getpid(), "kinds": kinds, "texts": dict(texts)}


def dump(*_: object) -> None:
    if _directory is None:
        return
    target = _directory / f"{os.getpid()}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot()))
    tmp.replace(target)  # a reader never sees half a file


def _on_execute(
    conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
) -> None:
    count(_verb(statement), statement)


def install(engine: AsyncEngine, directory: Path | None = None) -> None:
    """Count `engine`'s statements and transactions (when `directory`, or the environment,
    names where to write them)."""
    global _directory
    directory = directory or directory_from_env()
    if directory is None:
        return
    first = _directory is None
    _directory = directory
    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", _on_execute)
    for name in ("begin", "commit", "rollback", "savepoint", "release_savepoint"):
        event.listen(sync, name, lambda *_, kind=name: count(kind))
    # A new connection to PostgreSQL (a pool that opens and closes overflow connections
    # pays a backend's start and its statement cache each time).
    event.listen(sync, "connect", lambda *_: count("connect"))
    if first:
        gc.callbacks.append(_on_gc)
        directory.mkdir(parents=True, exist_ok=True)
        atexit.register(dump)
        # Only the main thread may set a signal handler; a process that makes its engine
        # elsewhere still writes its counts at exit.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, dump)


def log_driver_query(record: Any) -> None:
    """An asyncpg query logger: a statement run on the bare driver."""
    count(f"driver_{_verb(record.query)}", record.query)


@contextlib.contextmanager
def on_driver(driver: Any) -> Any:
    """Count what runs on `driver` within the block (nothing, when off)."""
    if _directory is None:
        yield
        return
    driver.add_query_logger(log_driver_query)
    try:
        yield
    finally:
        driver.remove_query_logger(log_driver_query)
