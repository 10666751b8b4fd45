"""Through a real PgBouncer in transaction mode, as Neon's pooled endpoint works.

Few server connections are shared by many client connections, so anything that relied on
server-side prepared statements or session state surviving between transactions fails here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.errors import InsufficientCredits
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, run_keyed
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import new_wallet

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pooler_port() -> Iterator[int]:
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed; scripts/ensure-services.sh installs it")
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    workdir.chmod(0o777)  # pgbouncer refuses to run as root and drops to postgres
    port = _free_port()
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(f"""
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    for f in workdir.iterdir():
        f.chmod(0o666)
    cmd = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail(f"pgbouncer exited: {proc.stdout.read() if proc.stdout else ''!r}")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def pooled_engine(database_url: str, pooler_port: int) -> AsyncIterator[AsyncEngine]:
    url = make_url(database_url).set(port=pooler_port).render_as_string(hide_password=False)
    # Debian's PgBouncer (1.18) predates prepared-statement tracking altogether: the
    # strictest transaction-mode pooler there is.
    eng = make_engine(
        Settings(database_url=url, db_pool_size=20, db_max_overflow=0, db_pooler="transaction")
    )
    try:
        yield eng
    finally:
        await eng.dispose()


async def test_wallet_operations_through_a_transaction_mode_pooler(
    pooled_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    wallet = await new_wallet(pooled_engine, 600)

    async def debit(i: int) -> str:
        try:
            await in_transaction(
                pooled_engine,
                lambda c: ws.consume_credits(
                    c,
                    wallet_id=wallet.id,
                    credits=5,
                    idempotency_key=f"pool:{wallet.id}:{i}",
                    reason="pooled",
                ),
            )
            return "ok"
        except InsufficientCredits:
            return "refused"

    outcomes = Counter(await asyncio.gather(*(debit(i) for i in range(150))))
    assert outcomes == {"ok": 120, "refused": 30}
    await in_transaction(
        pooled_engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=10,
            source=LotSource.bonus,
            idempotency_key=f"pg:{wallet.id}",
            reason="top-up",
        ),
    )
    hold = await in_transaction(
        pooled_engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=8,
            idempotency_key=f"ph:{wallet.id}",
            reason="x",
            ttl_s=60,
        ),
    )
    captured = await in_transaction(
        pooled_engine,
        lambda c: ws.capture_hold(
            c,
            hold_id=hold.hold.id,
            credits=5,  # type: ignore[union-attr]
            idempotency_key=f"pc:{wallet.id}",
        ),
    )
    assert (captured.wallet.available_credits, captured.wallet.locked_credits) == (5, 0)
    req = KeyedRequest(
        scope="pool-test", key=uuid.uuid4().hex, method="POST", path="/x", body={"n": 1}
    )

    async def work(conn: object, op_key: str) -> Answer:
        return Answer(201, {"op": op_key})

    first = await run_keyed(pooled_engine, req, work)  # type: ignore[arg-type]
    again = await run_keyed(pooled_engine, req, work)  # type: ignore[arg-type]
    assert again.replayed and again.body == first.body
    report = await in_transaction(engine, lambda c: ws.sync_balance(c, wallet.id))
    assert report.consistent, report.drift
