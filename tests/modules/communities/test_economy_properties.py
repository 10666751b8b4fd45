"""The credit economy's invariants over any sequence (hypothesis; DESIGN §10): purchases,
platform debits, community spends, reversals, refunds and expiries in any order keep every
check of `ledger verify` on lots, deferred revenue, recognized revenue, spends and
payables; and each spend's fee + net = gross, in credits and in paise.

Builds on `tests/modules/wallet/test_recognition_sequences.py` (its funding and refunds,
which post the refund's INR journal as the refunds module does), adding the community
operations and expiry. Refund rows are not written (that is the refunds module's own
bookkeeping), so the refunds module's checks are left out here.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities import invariants as community_invariants
from commdesk_billing.modules.communities import spends
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger import invariants as ledger_invariants
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds.allocation import Parts
from commdesk_billing.modules.wallet import invariants as wallet_invariants
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.expiry import expire_wallet
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import grant_bought
from tests.modules.wallet.test_recognition_sequences import (
    _fund,
    _Open,
    _request_refund,
    _settle,
)

pytestmark = pytest.mark.slow

CHECKS = (*ledger_invariants.CHECKS, *wallet_invariants.CHECKS, *community_invariants.CHECKS)
COMMUNITIES = [
    Community(f"prop-{i}-{uuid.uuid4().hex[:6]}", f"Club {i}", (), CommunityStatus.active)
    for i in range(2)
]
OPS = ["debit", "spend", "spend", "reverse", "refund", "settle", "expiring", "expire"]


async def _figures_add_up(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        bad = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM community_spends WHERE fee_credits + community_credits"
                    " <> credits OR fee_paise + community_paise <> basis_paise"
                )
            )
        ).scalar_one()
    assert bad == 0


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 2**31)), max_size=24))
async def test_any_sequence_keeps_the_economys_books(
    steps: list[tuple[str, int]], scratch_engine: AsyncEngine
) -> None:
    engine = scratch_engine
    wallet_id, packs = await _fund(engine)
    member = f"prop-member-{uuid.uuid4().hex}"
    pending: list[_Open] = []
    spent: list[uuid.UUID] = []
    fee_bps = {c.id: bps for c, bps in zip(COMMUNITIES, (1000, 333), strict=True)}
    for n, (op, seed) in enumerate(steps):
        rng = random.Random(seed)
        wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet_id))
        if op == "debit" and wallet.available_credits:
            k = rng.randint(1, wallet.available_credits)
            await in_transaction(
                engine,
                lambda c, k=k: ws.consume_credits(
                    c,
                    wallet_id=wallet_id,
                    credits=k,
                    idempotency_key=f"d:{uuid.uuid4()}",
                    reason="debit",
                ),
            )
        elif op == "spend" and wallet.available_credits:
            community = rng.choice(COMMUNITIES)
            k = rng.choice([1, 7, rng.randint(1, wallet.available_credits)])
            k = min(k, wallet.available_credits)
            s = await in_transaction(
                engine,
                lambda c, k=k, community=community, w=wallet: spends.spend(
                    c,
                    community=community,
                    wallet=w,
                    user_external_id=member,
                    credits=k,
                    reason="prop",
                    reference=None,
                    operation_key=f"s:{uuid.uuid4()}",
                    actor=member,
                    default_fee_bps=fee_bps[community.id],
                ),
            )
            spent.append(s.id)
        elif op == "reverse" and spent:
            sid = spent.pop(rng.randrange(len(spent)))
            await in_transaction(
                engine, lambda c, sid=sid: spends.reverse(c, spend_id=sid, reason="p", actor="p")
            )
        elif op == "refund":
            pack = rng.choice(packs)
            opened = await in_transaction(
                engine, lambda c, pack=pack, rng=rng: _request_refund(c, rng, wallet_id, pack)
            )
            if opened is not None:
                pack.standing = pack.standing + opened.parts
                pending.append(opened)
        elif op == "settle" and pending:
            refund = pending.pop(rng.randrange(len(pending)))
            succeed = rng.random() < 0.7
            await in_transaction(engine, lambda c, r=refund, s=succeed: _settle(c, r, s))
            if not succeed:
                refund.pack.standing = Parts(
                    *(
                        getattr(refund.pack.standing, f) - getattr(refund.parts, f)
                        for f in Parts.__dataclass_fields__
                    )
                )
        elif op == "expiring":
            paid, credits = rng.choice([0, 1000, 1777]), rng.randint(1, 300)
            await in_transaction(
                engine,
                lambda c, paid=paid, credits=credits: grant_bought(
                    c,
                    wallet_id=wallet_id,
                    credits=credits,
                    source=LotSource.purchase if paid else LotSource.promotional,
                    idempotency_key=f"x:{uuid.uuid4()}",
                    reason="expiring grant",
                    paid_paise=paid,
                    taxable_paise=paid * 100 // 118,
                    expires_at=datetime.now(UTC) - timedelta(seconds=1),
                ),
            )
        elif op == "expire":
            await in_transaction(engine, lambda c: expire_wallet(c, wallet_id=wallet_id))
        report = await verify_ledger(engine, CHECKS)
        assert report.ok, (n, op, report.findings)
        await _figures_add_up(engine)
