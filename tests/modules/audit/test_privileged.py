"""Every privileged action writes an audit entry (issue 16: grants, refunds, fraud decisions,
dead-letter replays and purges, fee plans, settlements, payout accounts, ...).

The list below is the one place that says which routes and commands are privileged. A
mutating route staff may call is either in it, with the action its entry names, or in
`NOT_PRIVILEGED` with why; a new one is neither and fails here until someone decides. Each
listed route is then driven through the API (in process) and must leave exactly one entry,
carrying the request's id and the client's address; the routes that need Cashfree are driven
by the module test named in `PROVEN_BY`, which asserts their entry.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.reconciliation import service as recon
from commdesk_billing.modules.reconciliation.model import Kind, Source
from commdesk_billing.queues.topology import Names, declare, delete
from commdesk_billing.security.jwt import Role
from tests import authz
from tests.conftest import auth, new_wallet
from tests.harness.mongo import MongoTarget, communities
from tests.modules.autorecharge.conftest import enable
from tests.modules.autorecharge.conftest import member as ar_member
from tests.modules.subscriptions.helpers import make_plan, member, subscribe

TESTS = Path(__file__).resolve().parents[2]
STAFF = {"finance_admin", "support"}

# Route → the action of the entry it writes.
PRIVILEGED_ROUTES = {
    "POST /v1/wallets/{wallet_id}/grants": "wallet.grant.promotional",
    "POST /v1/payments/{payment_id}/refunds": "refund.requested",
    "PUT /v1/communities/{community_id}/fee-plan": "community.fee_plan.changed",
    "POST /v1/community-spends/{spend_id}/reversal": "community.spend.reversed",
    "POST /v1/partners": "partner.created",
    "PUT /v1/partners/{partner_id}": "partner.terms.changed",
    "POST /v1/payees": "payee.created",
    "PUT /v1/payees/{payee_id}/payout-account": "payee.payout_account.changed",
    "POST /v1/payees/{payee_id}/suspend": "payee.suspended",
    "POST /v1/payees/{payee_id}/reactivate": "payee.reactivated",
    "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/release": (
        "sponsorship.milestone.released"
    ),
    "POST /v1/settlements/runs": "settlement.run",
    "POST /v1/communities/{community_id}/split-vendor": "split_vendor.registered",
    "POST /v1/usage/price-book": "usage.price_version.added",
    "POST /v1/subscription-plans": "subscription.plan.version",
    "POST /v1/subscriptions/{subscription_id}/cancel": "subscription.cancel",
    "POST /v1/fraud/reviews/{review_id}/decision": "fraud.review.released",
    "POST /v1/fraud/lists": "fraud.list.deny.added",
    "DELETE /v1/fraud/lists/{entry_id}": "fraud.list.deny.removed",
    "POST /v1/reconciliation/findings/{finding_id}/explain": "reconciliation.finding.explained",
    "POST /v1/reconciliation/findings/{finding_id}/resolve": "reconciliation.finding.resolved",
    "POST /v1/webhook-endpoints": "webhook_endpoint.created",
    "PATCH /v1/webhook-endpoints/{endpoint_id}": "webhook_endpoint.updated",
    "DELETE /v1/webhook-endpoints/{endpoint_id}": "webhook_endpoint.deleted",
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret": "webhook_endpoint.secret_rotated",
    "POST /v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay": (
        "webhook_delivery.replayed"
    ),
}
# Staff may call these, but only as anyone may, or to ask Cashfree what is true.
NOT_PRIVILEGED = {
    "POST /v1/payments/orders": "a person buying credits for themselves",
    "POST /v1/communities/{community_id}/spends": "a person spending their own credits",
    "POST /v1/subscriptions": "a person subscribing from their own wallet",
    "POST /v1/mandates": "a person setting up their own mandate",
    "PUT /v1/billing-profile": "a person's own billing details (the caller's, never another's)",
    "POST /v1/payments/{payment_id}/sync": "applies Cashfree's answer as the sync job does "
    "(recorded as a `manual` transition); it decides nothing",
}
# Routes driven by a test of their module (they need Cashfree's sandbox): the test that
# asserts their entry.
PROVEN_BY = {
    "POST /v1/payments/{payment_id}/refunds": "modules/refunds/test_refund_audit.py",
    "PUT /v1/payees/{payee_id}/payout-account": "modules/payees/test_audit_trail.py",
    "POST /v1/fraud/reviews/{review_id}/decision": "modules/fraud/test_scoring.py",
    "POST /v1/fraud/lists": "modules/fraud/test_scoring.py",
    "DELETE /v1/fraud/lists/{entry_id}": "modules/fraud/test_scoring.py",
    "POST /v1/communities/{community_id}/split-vendor": "modules/splits/test_api.py",
    "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/release": (
        "modules/sponsorships/test_api.py"
    ),
    # Events out: each endpoint change and a replay, asserted with the deliveries.
    "POST /v1/webhook-endpoints": "modules/events/test_endpoints.py",
    "PATCH /v1/webhook-endpoints/{endpoint_id}": "modules/events/test_endpoints.py",
    "DELETE /v1/webhook-endpoints/{endpoint_id}": "modules/events/test_endpoints.py",
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret": "modules/events/test_endpoints.py",
    "POST /v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay": (
        "modules/events/test_endpoints.py"
    ),
}
# Operator commands → the action of the entry each writes (as `cli:<os user>`).
PRIVILEGED_COMMANDS = {
    ("dlq", "replay"): "dlq.replayed",
    ("dlq", "purge"): "dlq.purged",
    ("auto-recharge", "pause"): "wallet.auto_recharge.paused",
    ("notifications", "retry"): "notification.retried",
}


def _matrix() -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for name in dir(authz):
        table = getattr(authz, name)
        if name.endswith("_ALLOW") and isinstance(table, dict):
            rows.update(table)
    return rows


def test_every_mutating_route_staff_may_call_is_classified() -> None:
    matrix = _matrix()
    staff_writes = {
        route
        for route, allowed in matrix.items()
        if not route.startswith("GET ") and allowed & STAFF
    }
    unclassified = staff_writes - set(PRIVILEGED_ROUTES) - set(NOT_PRIVILEGED)
    assert unclassified == set(), "say whether these are privileged (and audit them)"
    assert set(PRIVILEGED_ROUTES) | set(NOT_PRIVILEGED) <= set(matrix)  # nothing stale


def test_the_routes_proven_elsewhere_are_asserted_there() -> None:
    for route, path in PROVEN_BY.items():
        source = (TESTS / path).read_text()
        assert "audit_logs" in source and PRIVILEGED_ROUTES[route] in source, route


# --- the routes, driven in process ------------------------------------------------------


class Drive:
    """Calls as staff, each with a request id of its own; remembers them."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine):
        self.client, self.settings, self.engine = client, settings, engine
        self.sent: list[tuple[str, str]] = []  # (route, request id)

    async def call(
        self, route: str, url: str, body: Any = None, role: Role = Role.finance_admin
    ) -> dict[str, Any]:
        method = route.split(" ", 1)[0]
        rid = f"priv-{uuid.uuid4().hex}"
        headers = {
            **auth(_token(self.settings, role), uuid.uuid4().hex),
            "X-Request-Id": rid,
        }
        r = await self.client.request(method, url, json=body, headers=headers)
        assert r.status_code in (200, 201), (route, r.text)
        if route in PRIVILEGED_ROUTES:
            self.sent.append((route, rid))
        out: dict[str, Any] = r.json()
        return out


def _token(settings: Settings, role: Role, sub: str | None = None) -> str:
    from commdesk_billing.security.jwt import issue_token

    return issue_token(settings, sub=sub or f"{role.value}-{uuid.uuid4().hex[:8]}", role=role)


async def _finding_id(engine: AsyncEngine, reference: str) -> uuid.UUID:
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                text("SELECT id FROM reconciliation_findings WHERE reference = :r"),
                {"r": reference},
            )
        ).scalar_one()
    return uuid.UUID(str(found))


async def _community(mongodb: MongoTarget) -> str:
    cid = f"c-{uuid.uuid4().hex[:12]}"
    async with communities(mongodb) as collection:
        await collection.insert_one(
            {"_id": cid, "name": "Chess Club", "owner_ids": ["owner-x"], "status": "active"}
        )
    return cid


async def test_each_privileged_route_writes_one_entry_with_its_origin(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, mongodb: MongoTarget
) -> None:
    d = Drive(client, settings, engine)
    # A grant to a member's wallet.
    buyer = f"buyer-{uuid.uuid4().hex[:8]}"
    wallet = await new_wallet(engine, 0, sub=buyer)
    await d.call(
        "POST /v1/wallets/{wallet_id}/grants",
        f"/v1/wallets/{wallet.id}/grants",
        {"credits": 50, "reason": "goodwill"},
    )
    # A community's fee plan; a member's spend in it, reversed by finance.
    cid = await _community(mongodb)
    await d.call(
        "PUT /v1/communities/{community_id}/fee-plan",
        f"/v1/communities/{cid}/fee-plan",
        {"fee_bps": 700, "reason": "partner rate"},
    )
    spend = await client.post(
        f"/v1/communities/{cid}/spends",
        json={"credits": 10, "reason": "ticket"},
        headers=auth(_token(settings, Role.member, buyer), uuid.uuid4().hex),
    )
    assert spend.status_code == 201, spend.text
    await d.call(
        "POST /v1/community-spends/{spend_id}/reversal",
        f"/v1/community-spends/{spend.json()['id']}/reversal",
        {"reason": "double booked"},
    )
    # A partner, its terms, its payee; the payee suspended, reactivated, settled.
    pid = f"p{uuid.uuid4().hex[:10]}"
    await d.call(
        "POST /v1/partners", "/v1/partners", {"id": pid, "name": "Matrix", "share_bps": 500}
    )
    await d.call(
        "PUT /v1/partners/{partner_id}",
        f"/v1/partners/{pid}",
        {"name": "Matrix", "share_bps": 600, "reason": "renegotiated"},
    )
    payee = await d.call(
        "POST /v1/payees",
        "/v1/payees",
        {"kind": "partner", "subject_id": pid, "display_name": "Matrix"},
    )
    for action in ("suspend", "reactivate"):
        await d.call(
            f"POST /v1/payees/{{payee_id}}/{action}",
            f"/v1/payees/{payee['id']}/{action}",
            {"reason": "review"},
        )
    await d.call("POST /v1/settlements/runs", "/v1/settlements/runs", {"payee_id": payee["id"]})
    # A meter's price; a subscription plan; a member's subscription cancelled by support.
    await d.call(
        "POST /v1/usage/price-book",
        "/v1/usage/price-book",
        {
            "meter": f"m{uuid.uuid4().hex[:10]}",
            "tiers": [{"up_to": None, "millicredits_per_unit": 5}],
            "reason": "launch",
        },
    )
    plan = await make_plan(client, settings, price_credits=10)
    who = await member(engine, 100)
    sid = (await subscribe(client, settings, who, plan["code"]))["id"]
    await d.call(
        "POST /v1/subscriptions/{subscription_id}/cancel",
        f"/v1/subscriptions/{sid}/cancel",
        {"at_period_end": True},
        role=Role.support,
    )
    await d.call(
        "POST /v1/subscription-plans",
        "/v1/subscription-plans",
        {
            "code": f"p{uuid.uuid4().hex[:10]}",
            "name": "Pro",
            "price_credits": 100,
            "interval_unit": "month",
            "grace_period_seconds": 86400,
            "dunning_offsets_seconds": [3600],
        },
    )
    # Two reconciliation findings (recorded as a run records them): one explained, one
    # resolved.
    made = []
    for _ in range(2):
        obs = recon.observed(
            Source.gateway,
            Kind.missing_here,
            f"payment:priv-{uuid.uuid4().hex}",
            "planted for the audit walk",
        )
        await in_transaction(engine, lambda c, o=obs: recon.record(c, [o], datetime.now(UTC)))
        made.append(await _finding_id(engine, obs.reference))
    for action, fid in zip(("explain", "resolve"), made, strict=True):
        await d.call(
            f"POST /v1/reconciliation/findings/{{finding_id}}/{action}",
            f"/v1/reconciliation/findings/{fid}/{action}",
            {"note": "checked with Cashfree support"},
        )

    # What changed, as the entries say it: the fee plan it replaced (the default) and the
    # one in force now.
    async with engine.connect() as conn:
        plan_entry = (
            await conn.execute(
                text(
                    "SELECT before, after FROM audit_logs"
                    " WHERE action = 'community.fee_plan.changed' AND target_id = :c"
                ),
                {"c": cid},
            )
        ).one()
    assert (plan_entry.before, plan_entry.after) == (
        {"fee_bps": settings.community_fee_bps, "version": 0},
        {"fee_bps": 700, "version": 1},
    )
    driven = {route for route, _ in d.sent}
    assert driven == set(PRIVILEGED_ROUTES) - set(PROVEN_BY)  # every one, here or there
    async with engine.connect() as conn:
        for route, rid in d.sent:
            rows = (
                await conn.execute(
                    text(
                        "SELECT action, host(ip) AS ip, channel FROM audit_logs"
                        " WHERE request_id = :r"
                    ),
                    {"r": rid},
                )
            ).all()
            assert [tuple(r) for r in rows] == [(PRIVILEGED_ROUTES[route], "127.0.0.1", "http")], (
                route
            )


# --- the commands, run as an operator would ---------------------------------------------


@pytest.fixture
async def qsettings(settings: Settings) -> AsyncIterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    s = settings.model_copy(update={"rabbitmq_queue_prefix": prefix})
    names = Names(prefix, len(s.retry_delays_s))
    connection = await aio_pika.connect(s.rabbitmq_url)
    async with connection:
        await declare(await connection.channel(), names)
    yield s
    connection = await aio_pika.connect(s.rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), names)


def _cli(s: Settings) -> Callable[..., Awaitable[subprocess.CompletedProcess[str]]]:
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": s.database_url,
        "BILLING_RABBITMQ_URL": s.rabbitmq_url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": s.rabbitmq_queue_prefix,
        "BILLING_LOG_JSON": "false",
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "commdesk_billing.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


async def _operator_entries(
    engine: AsyncEngine, action: str, target: str, since: datetime | None = None
) -> list[Any]:
    """Entries for `target` (written at or after `since`: a queue's name is shared with
    the other tests using the same database)."""
    async with engine.connect() as conn:
        return list(
            await conn.execute(
                text(
                    "SELECT actor_sub, actor_role, channel, request_id, before, after, details"
                    " FROM audit_logs WHERE action = :a AND target_id = :t"
                    " AND created_at >= coalesce(CAST(:since AS timestamptz), '-infinity')"
                ),
                {"a": action, "t": target, "since": since},
            )
        )


@pytest.mark.slow
async def test_each_privileged_command_writes_an_entry_as_the_operator(
    qsettings: Settings, engine: AsyncEngine
) -> None:
    cli = _cli(qsettings)
    queue = "wallet.credit"
    async with engine.connect() as conn:
        started = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    connection = await aio_pika.connect(qsettings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for body in (b"garbage-1", b"garbage-2"):
            await channel.default_exchange.publish(
                aio_pika.Message(body),
                routing_key=Names(qsettings.rabbitmq_queue_prefix, 3).dlq(queue),
            )
    # Not envelopes: replay leaves both where they are; purge takes both.
    replay = await cli("dlq", "replay", queue)
    assert replay.returncode == 0, replay.stderr
    purge = await cli("dlq", "purge", queue, "--yes")
    assert purge.returncode == 0 and purge.stdout == "purged 2 message(s)\n", purge.stderr
    someone = await ar_member(engine, 500)
    await enable(engine, qsettings, someone)
    wallet = someone.wallet
    pause = await cli("auto-recharge", "pause", str(wallet.id), "--reason", "chargeback")
    assert pause.returncode == 0 and pause.stdout == "paused\n", pause.stderr
    missing = str(uuid.uuid4())
    retry = await cli("notifications", "retry", missing)
    assert retry.returncode == 3  # refused (no such delivery): nothing recorded

    operator = f"cli:{_os_user()}"
    [replayed] = await _operator_entries(engine, "dlq.replayed", queue, started)
    [purged] = await _operator_entries(engine, "dlq.purged", queue, started)
    [paused] = await _operator_entries(engine, "wallet.auto_recharge.paused", str(wallet.id))
    assert await _operator_entries(engine, "notification.retried", missing) == []
    for row in (replayed, purged, paused):
        assert (row.actor_sub, row.actor_role, row.channel) == (operator, "operator", "cli")
    assert replayed.request_id == f"dlq replay {queue}"
    assert (replayed.before, replayed.after) == ({"dead_letters": 2}, {"dead_letters": 2})
    assert replayed.details == {"message_id": None, "replayed": 0, "skipped": 2}
    assert (purged.before, purged.after, purged.details) == (
        {"dead_letters": 2},
        {"dead_letters": 0},
        {"purged": 2},
    )
    assert (paused.before, paused.after, paused.details) == (
        {"auto_recharge_enabled": True},
        {"auto_recharge_enabled": False},
        {"reason": "chargeback"},
    )
    assert set(PRIVILEGED_COMMANDS.values()) == {
        "dlq.replayed",
        "dlq.purged",
        "wallet.auto_recharge.paused",
        "notification.retried",
    }


def _os_user() -> str:
    import getpass

    return getpass.getuser()
