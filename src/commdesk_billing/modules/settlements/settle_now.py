"""Settle one payee now and see it through: for the demo and for operations by hand.

`settle_now` makes an on-demand settlement of one payee (its own period, cut-off now), then
brings its transfer forward itself through the same state machine the worker uses (the
create, then asking Cashfree), until it is paid or ended or the deadline passes; a worker
and webhooks running meanwhile change nothing (every step is conditional and locked). The
statement of where it ended is stored like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements import service, statement, transfers
from commdesk_billing.modules.settlements.model import OPEN, Settlement
from commdesk_billing.storage import DocumentStore, ObjectConflict, ObjectNotFound


@dataclass(frozen=True)
class Settled:
    settlement_id: uuid.UUID | None
    status: str  # paid, failed, reversed, processing (deadline), or why nothing was made
    gross_paise: int
    reserve_paise: int
    tds_paise: int
    tcs_paise: int
    fee_paise: int
    net_paise: int
    utr: str | None
    statement_key: str | None
    statement_path: str | None  # on the local disk store; None on Bunny


async def settle_now(
    engine: AsyncEngine,
    settings: Settings,
    payee_id: uuid.UUID,
    store: DocumentStore,
    *,
    by: str = "demo",
    timeout_s: float = 60.0,
    poll_s: float = 1.0,
) -> Settled:
    communities = community_directory(settings)
    try:
        return await _settle_now(
            engine,
            settings,
            communities,
            payee_id,
            store,
            by=by,
            timeout_s=timeout_s,
            poll_s=poll_s,
        )
    finally:
        await communities.aclose()


async def _settle_now(
    engine: AsyncEngine,
    settings: Settings,
    communities: CommunityDirectory,
    payee_id: uuid.UUID,
    store: DocumentStore,
    *,
    by: str,
    timeout_s: float,
    poll_s: float,
) -> Settled:
    [outcome] = await service.run(
        engine,
        settings,
        communities,
        by=by,
        payee_id=payee_id,
        period=f"run:{uuid.uuid4().hex}",
        cut_off=None,
    )
    if outcome.settlement is None:
        return Settled(None, outcome.waiting or "nothing", 0, 0, 0, 0, 0, 0, None, None, None)
    s = outcome.settlement
    client = payouts_client(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:

            async def step(conn: AsyncConnection) -> None:
                await transfers.process(conn, client, settings, communities, s.id, source="manual")

            # MongoDB not answering: nothing sent, nothing changed; asked again next round.
            with contextlib.suppress(transfers.TransferDeferred):
                await in_transaction(engine, step)
            current = await in_transaction(engine, lambda c: repo.get(c, s.id))
            assert current is not None
            if current.status not in OPEN or time.monotonic() > deadline:
                break
            await asyncio.sleep(poll_s)
    finally:
        await client.aclose()
    key = await _store_statement(engine, store, current, settings.seller_legal_name)
    path = str(Path(settings.storage_dir) / key) if settings.storage_backend == "local" else None
    return Settled(
        current.id,
        current.status.value,
        current.gross_paise,
        current.reserve_paise,
        current.tds_paise,
        current.tcs_paise,
        current.fee_paise,
        current.net_paise,
        current.utr,
        key,
        path,
    )


async def _store_statement(
    engine: AsyncEngine, store: DocumentStore, s: Settlement, seller: str
) -> str:
    key = statement.key_of(s)
    try:
        await store.get(key)
        return key
    except ObjectNotFound:
        pass
    attempts = await in_transaction(engine, lambda c: repo.attempts(c, s.id))
    with contextlib.suppress(ObjectConflict):  # drawn by someone else meanwhile: the same
        await store.put(key, statement.render(s, attempts, seller=seller), "application/pdf")
    return key
