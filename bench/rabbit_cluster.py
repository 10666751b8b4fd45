"""A RabbitMQ cluster of our own on this machine, beside whatever broker already runs here.

    python bench/rabbit_cluster.py start DIR [--nodes 3] [--port 5801] [--dist-port 25801]
    python bench/rabbit_cluster.py status DIR
    python bench/rabbit_cluster.py stop DIR

Nodes `cdb-a@localhost`, `cdb-b@localhost`, … each on its own AMQP port (5801, 5802, …) and
distribution port (25801, …), with its data, logs, pid file, config (loopback listener, no
plugins, so no management port) and environment file under DIR; the second and later nodes
join the first (`stop_app`, `join_cluster`, `start_app`). A quorum queue declared on the
cluster gets a replica on every member (RabbitMQ's default initial group size is the number
of cluster members). The nodes run as the `rabbitmq` user (su, as the Debian package does) so
they share the Erlang cookie in its home, which `rabbitmqctl -n` needs to reach them. `stop`
asks each node to stop and then kills what is left by the pid in its own pid file: only
these nodes, never a broker this module did not start. Runs as root (or as `rabbitmq`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
RABBIT_HOME = "/var/lib/rabbitmq"  # the rabbitmq user's home: its .erlang.cookie
LETTERS = "abcdefgh"


@dataclass(frozen=True)
class Node:
    index: int
    base: Path  # the cluster's DIR
    amqp_port: int
    dist_port: int

    @property
    def name(self) -> str:
        return f"cdb-{LETTERS[self.index]}@localhost"

    @property
    def dir(self) -> Path:
        return self.base / self.name.split("@")[0]

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        return {
            "HOME": RABBIT_HOME,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            # Distribution on loopback only, as the machine's own broker is configured.
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }


def nodes(
    base: Path, count: int, port: int = 5801, dist_port: int = 25801, first: int = 0
) -> list[Node]:
    """`first`: the first node's letter (0 = a), so two sets of nodes never share a name."""
    return [Node(first + i, base, port + i, dist_port + i) for i in range(count)]


def _as_rabbitmq(node: Node, *argv: str) -> list[str]:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in node.env().items())
    command = f"cd {RABBIT_HOME} && exec env {env} {shlex.join(argv)}"
    if os.geteuid() != 0:
        return ["sh", "-c", command]
    return ["su", "rabbitmq", "-s", "/bin/sh", "-c", command]


def ctl(node: Node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`rabbitmqctl -n <node> …` as the rabbitmq user."""
    return subprocess.run(
        _as_rabbitmq(node, str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rebalance(node: Node) -> subprocess.CompletedProcess[str]:
    """Spread the quorum queues' leaders over the running members (`rabbitmq-queues
    rebalance quorum`): otherwise the node that first declared them leads them all."""
    return subprocess.run(
        _as_rabbitmq(
            node, str(RABBIT_BIN / "rabbitmq-queues"), "-n", node.name, "rebalance", "quorum"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _prepare(node: Node) -> None:
    for sub in ("mnesia", "log"):
        (node.dir / sub).mkdir(parents=True, exist_ok=True)
    (node.dir / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
        # guest may connect from loopback only (RabbitMQ's default, said out loud): every
        # client here connects over 127.0.0.1, directly or through the local proxy.
        "loopback_users.guest = true\n"
        "log.file.level = warning\n"
        "log.console = false\n"
    )
    (node.dir / "advanced.config").write_text("[].\n")
    (node.dir / "enabled_plugins").write_text("[].\n")  # no management listener
    (node.dir / "rabbitmq-env.conf").write_text("")
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(node.base)], check=True)


def pid(node: Node) -> int | None:
    """The node's OS process, from its own pid file, if it is alive."""
    try:
        value = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if _alive(value) else None


def _alive(value: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        fields = Path(f"/proc/{value}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _wait_gone(value: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(value):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def start_node(node: Node) -> None:
    """Start one node detached (its data directory decides whether it rejoins a cluster)."""
    _prepare(node)
    subprocess.run(
        _as_rabbitmq(node, str(RABBIT_BIN / "rabbitmq-server"), "-detached"),
        check=True,
        capture_output=True,
        timeout=60,
    )


def wait_node(node: Node, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = ctl(node, "await_startup", "--timeout", "30", timeout=45)
        if r.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"{node.name} did not start in {timeout:.0f} s; see {node.dir / 'log'}")


def kill_node(node: Node) -> int | None:
    """SIGKILL the node's process (the pid in its own pid file); the pid killed."""
    value = pid(node)
    if value is not None:
        os.kill(value, signal.SIGKILL)
        _wait_gone(value, 10)
    return value


def _check(r: subprocess.CompletedProcess[str], what: str) -> None:
    if r.returncode != 0:
        raise RuntimeError(f"{what}: {r.stdout[-500:]} {r.stderr[-500:]}")


def start(
    base: Path, count: int = 3, port: int = 5801, dist_port: int = 25801, first: int = 0
) -> list[Node]:
    """Start the nodes and, on a fresh DIR, cluster them. Returns them once all are running
    and every one sees every other."""
    members = nodes(base, count, port, dist_port, first)
    fresh = not (members[0].dir / "mnesia").exists()
    for n in members:
        if pid(n) is None:
            start_node(n)
    for n in members:
        wait_node(n)
    if fresh:
        for n in members[1:]:
            _check(ctl(n, "stop_app"), f"{n.name} stop_app")
            _check(ctl(n, "join_cluster", members[0].name), f"{n.name} join_cluster")
            _check(ctl(n, "start_app"), f"{n.name} start_app")
            wait_node(n)
    running = running_members(members[0])
    if sorted(running) != sorted(n.name for n in members):
        raise RuntimeError(f"cluster not formed: running members {running}")
    return members


def running_members(node: Node) -> list[str]:
    r = ctl(node, "cluster_status", "--formatter", "json")
    _check(r, f"{node.name} cluster_status")
    return list(json.loads(r.stdout)["running_nodes"])


def stop(
    base: Path, count: int = 3, port: int = 5801, dist_port: int = 25801, first: int = 0
) -> None:
    for n in nodes(base, count, port, dist_port, first):
        value = pid(n)
        if value is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            ctl(n, "stop", timeout=60)
        if not _wait_gone(value, 30):
            # It did not stop: only the pid this node wrote in its own pid file.
            os.kill(value, signal.SIGKILL)
            _wait_gone(value, 10)


def _count(base: Path) -> int:
    return sum(1 for letter in LETTERS if (base / f"cdb-{letter}").is_dir()) or 3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--port", type=int, default=5801)
    parser.add_argument("--dist-port", type=int, default=25801)
    args = parser.parse_args()
    base = args.dir.resolve()
    count = args.nodes or (3 if args.action == "start" else _count(base))
    if args.action == "start":
        members = start(base, count, args.port, args.dist_port)
        print(" ".join(n.url for n in members))
    elif args.action == "stop":
        stop(base, count, args.port, args.dist_port)
    else:
        for n in nodes(base, count, args.port, args.dist_port):
            print(f"{n.name} amqp {n.amqp_port} dist {n.dist_port} pid {pid(n)}")
        alive = [n for n in nodes(base, count, args.port, args.dist_port) if pid(n)]
        if alive:
            print("running members:", " ".join(running_members(alive[0])))


if __name__ == "__main__":
    main()
