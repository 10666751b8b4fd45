"""Helpers for the usage tests: the routes called in-process as a usage-reporting service
and as finance, a fresh meter per test, and the wallet's figures read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import auth

LONG_AGO = timedelta(days=40)


def event(
    event_id: str, meter: str, quantity: int, wallet_id: uuid.UUID | str, at: datetime
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "meter": meter,
        "quantity": quantity,
        "wallet_id": str(wallet_id),
        "occurred_at": at.isoformat(),
    }


@dataclass(frozen=True)
class Figures:
    available: int
    lines: int
    usage_lines: int
    aggregates: tuple[tuple[Any, ...], ...]
    events: int


@dataclass
class Usage:
    client: httpx.AsyncClient
    settings: Settings
    engine: AsyncEngine
    source: str

    def service(self, scopes: tuple[str, ...] = ("usage:write",), sub: str | None = None) -> str:
        return issue_token(
            self.settings, sub=sub or self.source, role=Role.service, scopes=list(scopes)
        )

    def finance(self) -> str:
        return issue_token(self.settings, sub="finance-usage", role=Role.finance_admin)

    def meter(self) -> str:
        return f"m.{uuid.uuid4().hex[:12]}"

    async def price(
        self,
        meter: str,
        tiers: list[tuple[int | None, int]] | None = None,
        *,
        policy: str = "reject",
        limit: int = 0,
        effective_from: datetime | None = None,
        expect: int = 201,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "meter": meter,
            "tiers": [
                {"up_to": u, "millicredits_per_unit": p} for u, p in (tiers or [(None, 1000)])
            ],
            "on_insufficient": policy,
            "overdraft_limit_credits": limit,
            "reason": "test price",
            "effective_from": (effective_from or datetime.now(UTC) - LONG_AGO).isoformat(),
        }
        r = await self.client.post(
            "/v1/usage/price-book", json=body, headers=auth(self.finance(), uuid.uuid4().hex)
        )
        assert r.status_code == expect, r.text
        return dict(r.json())

    async def report(
        self, events: list[dict[str, Any]], token: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/usage/events", json={"events": events}, headers=auth(token or self.service())
        )

    async def accepted(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = await self.report(events)
        assert r.status_code == 200, r.text
        return list(r.json()["results"])

    async def summary(self, wallet_id: uuid.UUID, token: str | None = None, **params: Any) -> Any:
        r = await self.client.get(
            "/v1/usage/summary",
            params={"wallet_id": str(wallet_id), **params},
            headers=auth(token or self.service(("usage:read",))),
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def figures(self, wallet_id: uuid.UUID) -> Figures:
        async with self.engine.connect() as conn:
            available = (
                await conn.execute(
                    text("SELECT available_credits FROM wallets WHERE id = :w"), {"w": wallet_id}
                )
            ).scalar_one()
            lines = (
                await conn.execute(
                    text("SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w"),
                    {"w": wallet_id},
                )
            ).scalar_one()
            usage_lines = (
                await conn.execute(
                    text("""SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w
                             AND idempotency_key LIKE 'usage%'"""),
                    {"w": wallet_id},
                )
            ).scalar_one()
            aggregates = (
                await conn.execute(
                    text("""SELECT meter, granularity, period_start, units, millicredits,
                                   credits, debited_credits, debt_credits, events,
                                   rejected_events
                              FROM usage_aggregates WHERE wallet_id = :w
                             ORDER BY meter, granularity, period_start"""),
                    {"w": wallet_id},
                )
            ).all()
            events = (
                await conn.execute(
                    text("SELECT count(*) FROM usage_metering WHERE wallet_id = :w"),
                    {"w": wallet_id},
                )
            ).scalar_one()
        return Figures(
            int(available),
            int(lines),
            int(usage_lines),
            tuple(tuple(a) for a in aggregates),
            int(events),
        )


@pytest.fixture
def usage(client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine) -> Usage:
    return Usage(client, settings, engine, f"svc-usage-{uuid.uuid4().hex[:8]}")
