"""A RabbitMQ virtual host of the run's own, deleted at the end: every queue a run declares
(work queues, retry tiers, dead letters, whatever a crashed test left) goes with it, so test
runs never pile queues up on the shared broker."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from commdesk_billing.config import Settings

CTL_TIMEOUT_S = 60
LOCK_WAIT_S = 4 * CTL_TIMEOUT_S
# Virtual hosts are added and deleted one at a time across every process of the run
# (pytest-xdist workers): the broker was seen to stop answering vhost creation, for good,
# when several were created and deleted at once by parallel test processes.
_VHOST_LOCK = Path(tempfile.gettempdir()) / "commdesk-billing-test-vhosts.lock"


@contextlib.asynccontextmanager
async def _one_vhost_change_at_a_time() -> AsyncIterator[None]:
    # Polled, not a blocking flock in a thread: a thread stuck in flock behind a wedged
    # broker could never be cancelled, and the interpreter waits for it at exit, so the
    # whole run hung instead of failing.
    fd = os.open(_VHOST_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(
                        f"another test process held the broker's vhost lock for {LOCK_WAIT_S} s"
                    ) from None
                await asyncio.sleep(0.2)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def _ctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    # Its own process group: rabbitmqctl is a script that starts an Erlang VM (through su);
    # on a timeout the whole group goes, or the VM lingers holding one of the few ports the
    # broker's command-line tools may use, and later calls fail with "nodistribution".
    proc = await asyncio.create_subprocess_exec(
        ctl,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=CTL_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_leftovers(args)
        what = " ".join(args)
        raise RuntimeError(f"rabbitmqctl {what} did not answer in {CTL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(err or out).decode()[:300]}")
    return out.decode()


def _kill_leftovers(args: tuple[str, ...]) -> None:
    """`su` starts the tool's shell and VM in a session of their own, out of reach of the
    group kill: find them by their command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "rabbitmqctl" in cmdline and all(a in cmdline for a in args):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def vhost_url(base: str, vhost: str) -> str:
    """The broker URL with its virtual host replaced (URL-quoted, as AMQP URLs want it)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


async def create_vhost() -> tuple[str, str]:
    """A new virtual host (guest may do everything in it); its name and the broker URL."""
    name = f"cdb_{uuid.uuid4().hex[:12]}"
    async with _one_vhost_change_at_a_time():
        await _ctl("add_vhost", name)
        await _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name, vhost_url(Settings().rabbitmq_url, name)


async def delete_vhost(name: str) -> None:
    async with _one_vhost_change_at_a_time():
        await _ctl("delete_vhost", name)


async def list_queues(vhost: str) -> list[str]:
    """The names of every queue in the virtual host."""
    out = await _ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name")
    return [line.strip() for line in out.splitlines() if line.strip()]
