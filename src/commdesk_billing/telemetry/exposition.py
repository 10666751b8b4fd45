"""What a process's /metrics answers, and the API's multi-process mode.

`commdesk-billing api --workers N` runs N uvicorn processes behind one port: a scrape reaches
any one of them, so each answering with its own figures would make every counter jump
between processes' values. With several workers the CLI gives them a directory of their own
(`PROMETHEUS_MULTIPROC_DIR`, set before they start: prometheus_client reads it when first
imported) where every process keeps its figures in memory-mapped files, and /metrics sums
them (prometheus_client's multiprocess mode). A single process (one worker, the worker and
scheduler commands, the tests) serves its own registry as before.

A gauge's `multiprocess_mode` (`telemetry/metrics.py`) says how workers' values combine;
the files of a `live*` gauge are forgotten with the process that wrote them (`_forget_dead`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"
__all__ = ["CONTENT_TYPE_LATEST", "ENV", "multiprocess_dir", "payload", "shared_directory"]

_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) or None


def payload() -> bytes:
    """The text exposition of this process — or of every API worker, in multi-process mode."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest()
    _forget_dead(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead(directory: str) -> None:
    """A worker that died (uvicorn starts another) must not hold a `live*` gauge up."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        found = _LIVE_FILE.match(path.name)
        if found and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), directory)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def shared_directory() -> Iterator[str]:
    """For the API's workers: PROMETHEUS_MULTIPROC_DIR as given (emptied first: figures of
    a previous run would be summed in), or a private temporary directory, removed at the end.
    Set in this process's environment, which the workers inherit."""
    given = multiprocess_dir()
    if given is not None:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        yield given
        return
    made = tempfile.mkdtemp(prefix="commdesk-billing-metrics-")
    os.environ[ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)
