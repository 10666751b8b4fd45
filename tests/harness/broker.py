"""A RabbitMQ virtual host of the run's own, deleted at the end: every queue a run declares
(work queues, retry tiers, dead letters, whatever a crashed test left) goes with it, so test
runs never pile queues up on the shared broker."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

from commdesk_billing.config import Settings

CTL_TIMEOUT_S = 60


async def _ctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    proc = await asyncio.create_subprocess_exec(
        ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=CTL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        what = " ".join(args)
        raise RuntimeError(f"rabbitmqctl {what} did not answer in {CTL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(err or out).decode()[:300]}")
    return out.decode()


def vhost_url(base: str, vhost: str) -> str:
    """The broker URL with its virtual host replaced (URL-quoted, as AMQP URLs want it)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


async def create_vhost() -> tuple[str, str]:
    """A new virtual host (guest may do everything in it); its name and the broker URL."""
    name = f"cdb_{uuid.uuid4().hex[:12]}"
    await _ctl("add_vhost", name)
    await _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name, vhost_url(Settings().rabbitmq_url, name)


async def delete_vhost(name: str) -> None:
    await _ctl("delete_vhost", name)


async def list_queues(vhost: str) -> list[str]:
    """The names of every queue in the virtual host."""
    out = await _ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name")
    return [line.strip() for line in out.splitlines() if line.strip()]
