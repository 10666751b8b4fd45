"""A day of webhooks, compressed: the seed's 1M Cashfree webhook deliveries a day, its peak hour
and a quiet hour replayed at a speed-up on the real stack, then zero loss proved.

    .venv/bin/python bench/webhook_day.py [--speedup 10] [--peak-s 30] [--quiet-s 60]
                                          [--peak-hour 20] [--quiet-hour 3] [--workers 2]
                                          [--jitter-ms 1000] [--seed 1] [--no-docs]

The stack, started afresh on this machine as bench/payments_bench.py starts it: the project's
Cashfree sandbox process (its own HTTP server), one API process, `workers` worker processes,
PostgreSQL (a scratch database of its own) and RabbitMQ (a queue prefix of its own). No
scheduler: its payment sync would credit a payment whose webhook was lost, and this run must
show that none was, so every effect here is a webhook's doing.

The deliveries are what Cashfree sends us (cashfree.md §5, §5.7), made for real wherever the
sandbox makes them (`Mix` has the shares, docs/benchmarks.md the reasoning):
  - payments: orders opened through our API before the replay (opening one is the order
    path's work, measured elsewhere), then paid by buyers on the sandbox's hosted checkout
    at the replay's times: success, failure, user dropped, or a failure and a second attempt
    that succeeds on the same order. The sandbox sends each outcome's signed webhook itself,
    each delivery after a random 0..`jitter-ms` (its `webhook_jitter_ms` fault);
  - refunds: finance refunds a share of the purchases through our API once they are
    credited; the worker asks the sandbox, which sends REFUND_STATUS_WEBHOOK as it settles;
  - Cashfree's retries and duplicates: the sandbox's notify URL (our public base URL) is a
    tap, a process of its own that passes each delivery to the API byte for byte and times
    the answer. For a share of first attempts it loses the API's answer (504 to the sandbox,
    the API has stored it), so the sandbox retries on its own schedule (Cashfree's default
    2/10/30 minutes, divided by the speed-up): a true retry of the same bytes. For another
    share it delivers the same delivery twice at once (at-least-once delivery; the copy
    signed afresh with the sandbox's secret, as the sandbox signs each attempt);
  - out of order: for half of the orders paid on a second attempt, the first attempt's
    FAILED delivery is lost on the way (503 to the sandbox, never passed on), so its retry
    arrives after the success;
  - settlement webhooks (SETTLEMENT_SUCCESS, cashfree.md §5.6): the sandbox sends none, so
    the tap sends them signed with the sandbox's secret, one per 15 minutes of the day;
    our API keeps them as evidence (`ignored`);
  - forged: PAYMENT_SUCCESS for orders that were never paid, signed with a wrong secret,
    not signed, signed two days ago, or signed and then altered. Each must be refused (401)
    and stored nowhere.
Subscription, Payouts V2 and vendor settlement webhooks are not replayed (docs say why).

The timeline: the peak hour first, then the quiet hour, `--peak-s` and `--quiet-s` seconds of
a replay `--speedup` times faster than the day. Arrivals are a Poisson process at the hour's
rate of a 1M-a-day curve (`HOURLY`), open loop: a late system does not slow the offered load.
Then the run waits until every effect is done.

Zero loss, counted as the fault suite counts money (tests/failure, bench/scale_run.py): every
event the sandbox sent answered 200 by the API in the end and stored once (one row, its
repeats counted on it); every payment paid at the sandbox CREDITED exactly once (one purchase
lot, one bonus lot, one INR journal), the buyers' wallets holding 3 200 credits per credited,
unrefunded purchase; every refund SUCCESS once; abandoned orders never credited; forged
deliveries refused and stored nowhere; no dead letters; `ledger verify` clean after sealing.
pgbench runs in the same invocation. Results: bench/results/webhook_day.json and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from sqlalchemy.engine import make_url

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.gateway import signature
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import VerifyReport, verify_ledger
from commdesk_billing.modules.webhooks import reading
from commdesk_billing.queues.topology import QUEUES, Names
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from payments_bench import CLI, _drop_queues, _env
from pgtools import ROOT, admin_sql, db_url, pgbench_init, pgbench_tps, write_docs_block
from runstats import TICK, Backends, driver_ticks, ready, stop, tree_ticks

DAY = 1_000_000
RETRIES_MIN = (2, 10, 30)  # Cashfree's default retry policy (cashfree.md §5.7), minutes
CREDITS = 3200  # pack_300: 3 000 + a 200 bonus
IST = timezone(timedelta(hours=5, minutes=30))
WEBHOOK_PATH = "/v1/webhooks/cashfree"
# Share of a day's webhooks in each hour, IST (0 = midnight to 1 am): payments in India have a
# trough before dawn, a late-morning plateau and the evening peak (8 to 9 pm the highest).
# A shape, not a measurement; normalised to 1.
HOURLY = (
    2.0, 1.2, 0.8, 0.6, 0.6, 0.9, 1.6, 2.8, 4.0, 5.0, 5.8, 6.2,
    6.3, 6.0, 5.6, 5.3, 5.2, 5.4, 5.9, 6.4, 6.6, 5.8, 4.3, 3.0,
)  # fmt: skip
SHARE = tuple(h / sum(HOURLY) for h in HOURLY)


@dataclass(frozen=True)
class Mix:
    """What Cashfree sends us, per order and per delivery (docs/benchmarks.md says why)."""

    success: float = 0.72  # paid on the first attempt
    retry_success: float = 0.08  # a failed attempt, then a second one that succeeds
    failed: float = 0.10  # one failed attempt, abandoned
    dropped: float = 0.10  # the buyer left the UPI app: USER_DROPPED, abandoned
    refunded: float = 0.02  # of paid orders: finance refunds it in full the same day
    lost_answer: float = 0.03  # of first attempts: our 200 lost, Cashfree retries (a repeat)
    doubled: float = 0.01  # of first attempts: delivered twice at once
    late_failure: float = 0.5  # of retry_success orders: their FAILED delivery comes last
    forged: float = 0.01  # of all deliveries: not Cashfree's, to be refused
    settlements_a_day: int = 96  # one SETTLEMENT_SUCCESS per 15-minute settlement cycle

    def events_per_order(self) -> float:
        paid = self.success + self.retry_success
        attempts = self.success + 2 * self.retry_success + self.failed + self.dropped
        return attempts + self.refunded * paid

    def deliveries_per_order(self) -> float:
        # A lost request reaches the API once (its retry); a lost answer and a doubled
        # delivery twice.
        return self.events_per_order() * (1 + self.lost_answer + self.doubled)

    def per_day(self) -> dict[str, float]:
        """Deliveries of each kind in a day of DAY."""
        orders = (DAY * (1 - self.forged) - self.settlements_a_day) / self.deliveries_per_order()
        paid = orders * (self.success + self.retry_success)
        events = orders * self.events_per_order()
        return {
            "PAYMENT_SUCCESS_WEBHOOK": paid,
            "PAYMENT_FAILED_WEBHOOK": orders * (self.failed + self.retry_success),
            "PAYMENT_USER_DROPPED_WEBHOOK": orders * self.dropped,
            "REFUND_STATUS_WEBHOOK": paid * self.refunded,
            "SETTLEMENT_SUCCESS": float(self.settlements_a_day),
            "repeats: Cashfree's retries after a lost answer": events * self.lost_answer,
            "repeats: delivered twice at once": events * self.doubled,
            "forged, unsigned, stale or altered": DAY * self.forged,
        }


# --- the schedule --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    name: str
    hour: int
    seconds: float
    start: float  # offset in the replay
    rate: float  # deliveries per second offered


@dataclass(order=True)
class Action:
    at: float
    kind: str = field(compare=False)  # order | forged | settlement
    scenario: str = field(default="", compare=False)
    refund: bool = field(default=False, compare=False)


def schedule(windows: list[Window], mix: Mix, speedup: float, rng: random.Random) -> list[Action]:
    scenarios = ("success", "retry_success", "failed", "dropped")
    weights = (mix.success, mix.retry_success, mix.failed, mix.dropped)
    settle_rate = mix.settlements_a_day / 86_400 * speedup
    actions: list[Action] = []
    for w in windows:
        order_rate = (w.rate * (1 - mix.forged) - settle_rate) / mix.deliveries_per_order()
        for kind, rate in (
            ("order", order_rate),
            ("forged", w.rate * mix.forged),
            ("settlement", settle_rate),
        ):
            t = rng.expovariate(rate)
            while t < w.seconds:
                scenario = rng.choices(scenarios, weights)[0] if kind == "order" else ""
                paid = scenario in ("success", "retry_success")
                refund = paid and rng.random() < mix.refunded
                actions.append(Action(w.start + t, kind, scenario, refund))
                t += rng.expovariate(rate)
    return sorted(actions)


# --- the tap: a process of its own between the sandbox and our API ------------------------


@dataclass
class Delivery:
    """One HTTP delivery as it reached (or did not reach) our API."""

    key: str  # the event's identity, as our receiver dedupes it
    type: str
    order_id: str | None
    source: str  # sandbox | doubled | settlement | forged:<kind>
    attempt: int
    sent: float  # time.time() when it left for the API
    latency: float | None  # the API's answer time; None: never passed on
    status: int | None
    outcome: str  # the receipt's status, or the problem's code
    fate: str = ""  # lost_answer | lost_request | doubled


def serve_tap(port: int, api: str, secret: str, seed: int) -> None:
    """`--serve-tap`: the tap's process (uvicorn on uvloop, one event loop)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    mix = Mix()
    rng = random.Random(seed)
    deliveries: list[Delivery] = []
    late: set[str] = set()  # orders whose FAILED delivery's first attempt is lost
    waiting: dict[str, str] = {}  # events whose retry is due: key -> fate
    client = httpx.AsyncClient(base_url=api, timeout=120, limits=httpx.Limits(max_connections=256))

    async def send(
        body: bytes, headers: dict[str, str], meta: tuple[str, str, str | None], source: str
    ) -> Delivery:
        key, kind, order_id = meta
        attempt = int(headers.get("x-webhook-attempt") or 1)
        sent, started = time.time(), time.perf_counter()
        try:
            r = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            status, latency = r.status_code, time.perf_counter() - started
            try:
                parsed = r.json()
                outcome = str(parsed.get("status") or parsed.get("code") or "")
            except ValueError:
                outcome = r.text[:100]
        except httpx.HTTPError as exc:
            status, latency, outcome = None, time.perf_counter() - started, type(exc).__name__
        d = Delivery(key, kind, order_id, source, attempt, sent, latency, status, outcome)
        deliveries.append(d)
        return d

    def identity(body: bytes) -> tuple[str, str, str | None]:
        delivery = reading.read(body)
        order_id = None
        if delivery.payment is not None:
            order_id = delivery.payment.order.order_id
        elif delivery.refund is not None:
            order_id = delivery.refund.order_id
        return reading.dedupe_key(delivery, body), delivery.type, order_id

    async def cashfree(request: Request) -> Response:
        body = await request.body()
        meta = identity(body)
        attempt = int(request.headers.get("x-webhook-attempt") or 1)
        passed = {
            k: v for k, v in request.headers.items() if k.startswith("x-") or k == "content-type"
        }
        fate = ""
        if attempt == 1:
            if meta[1] == "PAYMENT_FAILED_WEBHOOK" and meta[2] in late:
                fate = "lost_request"
            else:
                roll = rng.random()
                if roll < mix.lost_answer:
                    fate = "lost_answer"
                elif roll < mix.lost_answer + mix.doubled:
                    fate = "doubled"
        if fate == "lost_request":
            # Lost on the way: it never reaches the API; the sandbox retries it later.
            deliveries.append(
                Delivery(meta[0], meta[1], meta[2], "sandbox", 1, time.time(), None, None, "", fate)
            )
            waiting[meta[0]] = fate
            return Response(b"", 503)
        if fate == "doubled":
            ts = str(int(time.time() * 1000))
            again = passed | {
                "x-webhook-timestamp": ts,
                "x-webhook-signature": signature.sign(secret, ts, body),
            }
            d, copy = await asyncio.gather(
                send(body, passed, meta, "sandbox"), send(body, again, meta, "doubled")
            )
            copy.fate = fate
        else:
            d = await send(body, passed, meta, "sandbox")
        d.fate = fate
        if fate == "lost_answer":
            waiting[meta[0]] = fate
            return Response(b"", 504)  # the API answered; the sandbox never hears it
        if attempt > 1 and d.status == 200:
            waiting.pop(meta[0], None)
        return Response(b"", d.status or 502)

    async def mark_late(request: Request) -> Response:
        late.add((await request.body()).decode())
        return Response(b"", 204)

    async def send_one(request: Request) -> Response:
        """A delivery the driver made (forged, settlement), sent and timed here."""
        spec = json.loads(await request.body())
        body = base64.b64decode(spec["body"])
        meta = identity(body) if spec["source"] == "settlement" else (spec["key"], "forged", None)
        d = await send(body, spec["headers"], meta, spec["source"])
        return JSONResponse({"status": d.status, "outcome": d.outcome})

    async def state(request: Request) -> Response:
        if request.query_params.get("all"):
            return JSONResponse({"deliveries": [asdict(d) for d in deliveries], "late": list(late)})
        return JSONResponse({"waiting": len(waiting), "deliveries": len(deliveries)})

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, cashfree, methods=["POST"]),
            Route("/_late", mark_late, methods=["POST"]),
            Route("/_send", send_one, methods=["POST"]),
            Route("/_state", state, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the buyers, finance, the forger -------------------------------------------------------


@dataclass
class Order:
    payment_id: str
    order_id: str
    session: str
    checkout: str
    scenario: str = ""
    paid: bool = False
    refund: bool = False
    attempts: int = 0  # checkouts the sandbox took


async def open_orders(
    api: str, settings: Settings, n: int, buyers: int, concurrency: int, tag: str
) -> list[Order]:
    tokens = [
        issue_token(settings, sub=f"whday-{tag}-{i}", role=Role.member) for i in range(buyers)
    ]
    orders: list[Order] = []
    async with httpx.AsyncClient(
        base_url=api, timeout=120, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def opener() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post(
                    "/v1/payments/orders",
                    json={"pack_code": "pack_300", "customer_phone": "9999999999"},
                    headers={
                        "Authorization": f"Bearer {tokens[i % buyers]}",
                        "Idempotency-Key": f"{tag}-{i}",
                    },
                )
                if r.status_code != 201:
                    raise RuntimeError(f"order: {r.status_code} {r.text[:300]}")
                o = r.json()
                checkout = o["checkout_url"].split("?", 1)[0]
                orders.append(Order(o["id"], o["order_id"], o["payment_session_id"], checkout))

        await asyncio.gather(*(opener() for _ in range(concurrency)))
    return orders


class Db:
    """The bench's one connection to the scratch database (a connection per question would
    fork a backend each time and show up in PostgreSQL's CPU)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, db: str) -> Db:
        dsn = make_url(db_url(db)).set(drivername="postgresql")
        return cls(await asyncpg.connect(dsn.render_as_string(hide_password=False)))

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.lock:
            return list(await self.conn.fetch(sql, *args))


class Replay:
    def __init__(
        self,
        *,
        api: str,
        tap: str,
        sandbox: str,
        db: Db,
        settings: Settings,
        orders: list[Order],
        reserve: list[Order],
        think_s: float,
        seed: int,
        give_up_s: float,
    ) -> None:
        self.api = api
        self.tap = tap
        self.db = db
        self.secret = settings.cashfree_client_secret.get_secret_value()
        self.orders = orders
        self.next = 0
        self.reserve = reserve  # never paid: the forger's targets besides abandoned orders
        self.abandoned: list[Order] = []
        self.think_s = think_s
        self.give_up_s = give_up_s
        self.rng = random.Random(seed + 1)
        self.finance = issue_token(settings, sub="whday-finance", role=Role.finance_admin)
        # No kept-alive sockets: a server closing an idle one as a request goes out on it
        # would make a checkout's outcome unknown.
        self.client = httpx.AsyncClient(
            timeout=120, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.lateness: list[float] = []
        self.forged: list[tuple[str, bytes, Order, int | None]] = []  # kind, body, target, status
        self.settlements = 0
        self.checkouts: list[float] = []  # when each checkout was sent (time.time())
        self.checkouts_sent_again = 0
        self.unanswered_checkouts = 0  # no answer, but the attempt was there
        self.sandbox = sandbox
        self.merchant = {
            "x-client-id": settings.cashfree_client_id,
            "x-client-secret": self.secret,
            "x-api-version": "2025-01-01",
        }
        self.refunds: dict[str, str] = {}  # payment id -> refund id
        self.errors: list[str] = []
        self.mix = Mix()

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # counted and reported, never hidden
                self.errors.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")

        task = asyncio.get_running_loop().create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def checkout(self, order: Order, outcome: str) -> None:
        """The hosted checkout's form post. When the connection fails with no answer the
        outcome is unknown, so the buyer looks (the order's attempts at the sandbox, as a page
        reload would show) and pays again only if no new attempt is there."""
        for _ in range(4):
            self.checkouts.append(time.time())
            try:
                r = await self.client.post(
                    order.checkout,
                    data={
                        "payment_session_id": order.session,
                        "payment_method": "upi",
                        "outcome": outcome,
                    },
                )
            except httpx.TransportError:
                if len(await self.attempts(order)) > order.attempts:
                    order.attempts += 1
                    self.unanswered_checkouts += 1
                    return
                self.checkouts_sent_again += 1
                await asyncio.sleep(1)
                continue
            if r.status_code != 200:
                raise RuntimeError(f"checkout {outcome}: {r.status_code} {r.text[:200]}")
            order.attempts += 1
            return
        raise RuntimeError(f"checkout {outcome}: no answer four times")

    async def attempts(self, order: Order) -> list[Any]:
        r = await self.client.get(
            f"{self.sandbox}/pg/orders/{order.order_id}/payments", headers=self.merchant
        )
        r.raise_for_status()
        return list(r.json())

    async def play(self, order: Order) -> None:
        s = order.scenario
        if s == "success":
            await self.checkout(order, "success")
        elif s == "failed":
            await self.checkout(order, "failure")
        elif s == "dropped":
            await self.checkout(order, "user_dropped")
        else:  # retry_success: the buyer tries again a little later, on the same order
            if self.rng.random() < self.mix.late_failure:
                await self.client.post(f"{self.tap}/_late", content=order.order_id.encode())
            await self.checkout(order, "failure")
            await asyncio.sleep(self.think_s)
            await self.checkout(order, "success")
        if s in ("failed", "dropped"):
            self.abandoned.append(order)
            return
        order.paid = True
        if order.refund:
            await self.refund(order)

    async def refund(self, order: Order) -> None:
        """Finance refunds the purchase once it is credited (asking our own database)."""
        deadline = time.perf_counter() + self.give_up_s
        pid = uuid.UUID(order.payment_id)
        while (await self.db.fetch("SELECT status FROM payments WHERE id = $1", pid))[0][
            0
        ] != "CREDITED":
            if time.perf_counter() > deadline:
                raise RuntimeError(f"payment {order.payment_id} never credited: no refund asked")
            await asyncio.sleep(1)
        r = await self.client.post(
            f"{self.api}/v1/payments/{order.payment_id}/refunds",
            json={"reason": "customer asked"},
            headers={
                "Authorization": f"Bearer {self.finance}",
                "Idempotency-Key": f"whday-refund-{order.payment_id}",
            },
        )
        if r.status_code != 202:
            raise RuntimeError(f"refund: {r.status_code} {r.text[:200]}")
        self.refunds[order.payment_id] = r.json()["id"]

    async def via_tap(self, body: bytes, headers: dict[str, str], key: str, source: str) -> Any:
        spec = {
            "body": base64.b64encode(body).decode(),
            "headers": headers,
            "key": key,
            "source": source,
        }
        r = await self.client.post(f"{self.tap}/_send", json=spec)
        r.raise_for_status()
        return r.json()

    async def forge(self, n: int) -> None:
        target = self.rng.choice(self.abandoned + self.reserve)
        kinds = ("wrong_secret", "unsigned", "stale", "altered")
        kind = kinds[n % len(kinds)]
        body = _payment_body(target.order_id, str(90_000_000 + n), "SUCCESS")
        now = str(int(time.time() * 1000))
        headers: dict[str, str] = {"content-type": "application/json"}
        if kind == "wrong_secret":
            headers |= _signed("cfsk_ma_test_someone_elses_secret", now, body)
        elif kind == "stale":
            headers |= _signed(self.secret, str(int((time.time() - 2 * 86_400) * 1000)), body)
        elif kind == "altered":
            # Our secret's signature over a FAILED delivery, changed to SUCCESS on the way.
            genuine = _payment_body(target.order_id, str(90_000_000 + n), "FAILED")
            headers |= _signed(self.secret, now, genuine)
        key = f"forged:{hashlib.sha256(body).hexdigest()}"
        answer = await self.via_tap(body, headers, key, f"forged:{kind}")
        self.forged.append((kind, body, target, answer["status"]))

    async def settlement(self, n: int) -> None:
        now = _ist_now()
        body = (
            '{"data":{"settlement":{"adjustment":0,"amount_settled":97.94,"payment_amount":100,'
            '"payment_from":"2026-12-07 12:00:00","payment_till":"2026-12-07 12:15:00",'
            f'"reason":null,"service_charge":1.75,"service_tax":0.31,"settled_on":"{now}",'
            f'"settlement_type":"STANDARD","settlement_amount":97.94,"settlement_id":{7000 + n},'
            f'"settlement_initiated_on":"{now}","status":"SUCCESS","utr":{1644822317781212 + n},'
            '"settlement_charge":0,"settlement_tax":0,"remarks":null,'
            '"forex_conversion_handling_charge":null,"forex_conversion_handling_tax":null}},'
            f'"event_time":"{now}","type":"SETTLEMENT_SUCCESS"}}'
        ).encode()
        ts = str(int(time.time() * 1000))
        headers = {"content-type": "application/json", **_signed(self.secret, ts, body)}
        await self.via_tap(body, headers, "", "settlement")

    async def run(self, actions: list[Action], started: float) -> None:
        forged = 0
        for a in actions:
            delay = started + a.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lateness.append(max(0.0, -delay))
            if a.kind == "order":
                order = self.orders[self.next]
                self.next += 1
                order.scenario, order.refund = a.scenario, a.refund
                self.spawn(self.play(order), f"order {order.order_id} ({a.scenario})")
            elif a.kind == "forged":
                self.spawn(self.forge(forged), "forged")
                forged += 1
            else:
                self.settlements += 1
                self.spawn(self.settlement(self.settlements), "settlement")

    async def settled(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def _payment_body(order_id: str, cf_payment_id: str, status: str) -> bytes:
    return (
        f'{{"data":{{"order":{{"order_id":"{order_id}","order_amount":300.00,'
        '"order_currency":"INR","order_tags":null},'
        f'"payment":{{"cf_payment_id":"{cf_payment_id}","payment_status":"{status}",'
        '"payment_amount":300.00,"payment_currency":"INR","payment_group":"upi",'
        '"payment_method":{"upi":{"channel":"collect","upi_id":"testsuccess@gocash"}}}},'
        f'"event_time":"{_ist_now()}","type":"PAYMENT_{status}_WEBHOOK"}}'
    ).encode()


def _signed(secret: str, ts: str, body: bytes) -> dict[str, str]:
    return {
        "x-webhook-timestamp": ts,
        "x-webhook-signature": signature.sign(secret, ts, body),
        "x-webhook-version": "2025-01-01",
        "x-webhook-attempt": "1",
    }


def _ist_now() -> str:
    return datetime.now(IST).replace(microsecond=0).isoformat()


# --- watching the backlog ------------------------------------------------------------------


class Queues:
    """Messages waiting in this run's work and retry queues, and in its dead-letter queues,
    over one broker connection."""

    def __init__(self, prefix: str) -> None:
        self.names = Names(prefix, len(Settings().retry_delays_s))
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def depth(self) -> tuple[int, int]:
        if self.connection is None:
            self.connection = await aio_pika.connect_robust(Settings().rabbitmq_url)
        channel = await self.connection.channel()
        waiting = dead = 0
        try:
            for q in QUEUES:
                for name, is_dead in ((self.names.work(q), False), (self.names.dlq(q), True)):
                    declared = await channel.declare_queue(name, passive=True)
                    count = declared.declaration_result.message_count or 0
                    dead, waiting = (dead + count, waiting) if is_dead else (dead, waiting + count)
            for name in self.names.tiers_all():
                declared = await channel.declare_queue(name, passive=True)
                waiting += declared.declaration_result.message_count or 0
        finally:
            await channel.close()
        return waiting, dead

    async def close(self) -> None:
        """Closed between uses that are minutes apart: an idle connection on a loop that
        is busy with the replay misses its heartbeats and the broker resets it."""
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


@dataclass
class Sample:
    t: float  # seconds since the replay started
    stored_not_acted: int  # webhooks stored, not yet acted on (status received)
    paid_not_credited: int
    unrelayed: int  # outbox rows not yet published
    queued: int | None  # messages in the work and retry queues (None: not read)
    dead: int | None
    credited: int


async def sample(db: Db, t: float, queues: Queues | None = None) -> Sample:
    rows = await db.fetch(
        """SELECT (SELECT count(*) FROM payment_webhooks WHERE status = 'received'),
                  (SELECT count(*) FROM payments WHERE status = 'PAID'),
                  (SELECT count(*) FROM outbox WHERE sent_at IS NULL),
                  (SELECT count(*) FROM payments WHERE status = 'CREDITED')"""
    )
    queued, dead = await queues.depth() if queues is not None else (None, None)
    r = rows[0]
    return Sample(t, int(r[0]), int(r[1]), int(r[2]), queued, dead, int(r[3]))


class Watcher(threading.Thread):
    """The backlog once a second, and the queues' depth as each window ends, on a thread and
    an event loop of its own (the driver's loop runs late when the machine is busy)."""

    def __init__(
        self,
        db: str,
        prefix: str,
        windows: list[Window],
        samples: list[Sample],
        end_of: dict[str, Sample],
    ) -> None:
        super().__init__(daemon=True)
        self.db, self.prefix, self.started = db, prefix, 0.0
        self.ends = {w.start + w.seconds: w.name for w in windows}
        self.samples, self.end_of = samples, end_of
        self.ready, self.go, self.stopping = threading.Event(), threading.Event(), threading.Event()
        self.pid = 0  # its database backend's, left out of PostgreSQL's CPU

    def run(self) -> None:
        asyncio.run(self.watch())

    async def watch(self) -> None:
        db, queues = await Db.open(self.db), Queues(self.prefix)
        self.pid = db.conn.get_server_pid()
        self.ready.set()
        await asyncio.to_thread(self.go.wait)
        try:
            while not self.stopping.is_set():
                t = time.perf_counter() - self.started
                due = [e for e in self.ends if e <= t and self.ends[e] not in self.end_of]
                snap = await sample(db, t, queues if due else None)
                self.samples.append(snap)
                for e in due:
                    self.end_of[self.ends[e]] = snap
                await asyncio.sleep(max(0.0, 1 - (time.perf_counter() - self.started - t)))
        finally:
            await queues.close()
            await db.conn.close()


async def api_histogram(api: str) -> dict[str, float]:
    """The API's own latency histogram for the webhook route (`/metrics`): cumulative share
    of requests answered within each bucket, seen from inside the server."""
    async with httpx.AsyncClient(timeout=60) as client:
        text = (await client.get(f"{api}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("billing_http_request_duration_seconds_bucket") and (
            f'route="{WEBHOOK_PATH}"' in line and 'method="POST"' in line
        ):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[le] = counts.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    total = counts.get("+Inf", 0.0)
    return {le: n / total for le, n in counts.items()} if total else {}


class OurBackends(Backends):
    """scale_run's sampler of the scratch database's backends, once a second and without the
    bench's own connection."""

    def __init__(self, db: str, exclude: set[int]) -> None:
        super().__init__(db)
        self.exclude = exclude

    def _sample(self) -> dict[int, int]:
        return {p: t for p, t in super()._sample().items() if p not in self.exclude}

    def run(self) -> None:
        self.first = self._sample()
        while not self.stopping.wait(1.0):
            self.last.update(self._sample())
        self.last.update(self._sample())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


# --- the run -------------------------------------------------------------------------------


async def verify(db: str) -> VerifyReport:
    engine = make_engine(Settings(database_url=db_url(db)), pool_size=2)
    try:
        await seal_pending(engine)
        return await verify_ledger(engine)
    finally:
        await engine.dispose()


async def get_json(url: str, **headers: str) -> Any:
    async with httpx.AsyncClient(timeout=300) as client:
        r = await client.get(url, headers=headers)
        r.raise_for_status()
        return r.json()


async def replay(args: argparse.Namespace, db: str, prefix: str, pgb: str) -> dict[str, Any]:
    mix = Mix()
    settings = Settings()
    secret = settings.cashfree_client_secret.get_secret_value()
    api, sandbox, tap = (f"http://127.0.0.1:{free_port()}" for _ in range(3))
    s = args.speedup
    storage = tempfile.mkdtemp(prefix="cdb-whday-")
    env = {
        **_env(db_url(db), prefix, api, sandbox),
        # Cashfree's notify URL is built from our public base URL: here the tap's.
        "BILLING_PUBLIC_BASE_URL": tap,
        # Cashfree's default retry policy (2, 10 and 30 minutes), compressed like the day.
        "BILLING_SANDBOX_WEBHOOK_RETRY_SCHEDULE_S": ",".join(
            f"{m * 60 / s:g}" for m in RETRIES_MIN
        ),
        "BILLING_SANDBOX_REFUND_DELAY_S": f"{300 / s:g}",  # a refund settles in minutes
        "BILLING_SANDBOX_WEBHOOK_JITTER_MS": str(args.jitter_ms),
        "BILLING_SANDBOX_WEBHOOK_TIMEOUT_S": f"{args.webhook_timeout_s:g}",
        "BILLING_STORAGE_DIR": storage,
        # The app's own default (payments_bench runs its consumers at 32).
        "BILLING_CONSUMER_PREFETCH": str(args.prefetch),
        "BILLING_PAYMENT_ORDER_TTL_S": str(6 * 3600),
        # Forged deliveries come from 127.0.0.1 like everything here: each is charged to the
        # limiter (its cost is in the figures), none refused by it.
        "BILLING_RATE_LIMIT_WEBHOOKS_IP": "1000000",
        "BILLING_RATE_LIMIT_WEBHOOKS_IP_BURST": "1000000",
        # As in bench/scale_run.py: scoring runs, holds nobody (every buyer is 127.0.0.1).
        "BILLING_FRAUD_REVIEW_SCORE": "101",
        "BILLING_FRAUD_BLOCK_SCORE": "101",
    }
    windows: list[Window] = []
    offset = 0.0
    for name, hour, secs in (
        ("peak", args.peak_hour, args.peak_s),
        ("quiet", args.quiet_hour, args.quiet_s),
    ):
        if secs > 0:
            windows.append(Window(name, hour, secs, offset, DAY * SHARE[hour] / 3600 * s))
            offset += secs
    rng = random.Random(args.seed)
    actions = schedule(windows, mix, s, rng)
    n_orders = sum(1 for a in actions if a.kind == "order")
    reserve_n = 20
    print(
        f"schedule: {len(actions)} actions, {n_orders} orders; "
        + ", ".join(f"{w.name} {w.rate:.1f}/s for {w.seconds:g} s" for w in windows),
        flush=True,
    )

    logs = Path(storage) / "logs"
    logs.mkdir()
    sandbox_p = _logged(
        logs, "sandbox", env, "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off"
    )
    api_p = _logged(logs, "api", env, "--port", api.rsplit(":", 1)[1])
    workers = [_logged(logs, f"worker{i}", env) for i in range(args.workers)]
    tap_p = _spawn_tap(tap, api, args.seed, env)
    procs = [sandbox_p, api_p, *workers, tap_p]
    db_conn = await Db.open(db)
    queues = Queues(prefix)
    try:
        for url in (f"{sandbox}/_sandbox/health", f"{api}/readyz", f"{tap}/_state"):
            await ready(url)

        # 1. The day's orders, opened through our API (not part of the replay's figures).
        tag = uuid.uuid4().hex[:8]
        t0 = time.perf_counter()
        orders = await open_orders(api, settings, n_orders + reserve_n, 200, 16, tag)
        prepare_s = time.perf_counter() - t0
        rng.shuffle(orders)
        reserve, orders = orders[:reserve_n], orders[reserve_n:]
        print(f"opened {len(orders) + reserve_n} orders in {prepare_s:.0f} s", flush=True)
        await quiet(queues, db_conn, 600)
        await queues.close()

        # 2. The yardstick, on the same machine, with the stack idle.
        load_before = os.getloadavg()[0]
        tps = await asyncio.to_thread(pgbench_tps, pgb, 16, 10)
        print(f"pgbench {tps:.0f} tps, load {load_before:.1f}", flush=True)

        # 3. The replay, then the drain.
        run = Replay(
            api=api,
            tap=tap,
            sandbox=sandbox,
            db=db_conn,
            settings=settings,
            orders=orders,
            reserve=reserve,
            think_s=max(0.5, 30 / s),
            seed=args.seed,
            give_up_s=args.drain_limit_s,
        )
        roots = {
            "api": [api_p.pid],
            "worker": [p.pid for p in workers],
            "sandbox": [sandbox_p.pid],
            "tap": [tap_p.pid],
        }
        samples: list[Sample] = []
        end_of: dict[str, Sample] = {}
        watcher = Watcher(db, prefix, windows, samples, end_of)
        watcher.start()
        await asyncio.to_thread(watcher.ready.wait, 60)
        cpu0 = {k: tree_ticks(v) for k, v in roots.items()}
        backends = OurBackends(db, {db_conn.conn.get_server_pid(), watcher.pid})
        backends.start()
        driver0 = driver_ticks()
        loads = [load_before, os.getloadavg()[0]]
        started = watcher.started = time.perf_counter()
        wall0 = time.time()
        watcher.go.set()
        await run.run(actions, started)
        offered_s = time.perf_counter() - started
        await asyncio.sleep(max(0.0, offset - offered_s) + 1.5)
        loads.append(os.getloadavg()[0])
        print(f"offered everything in {offered_s:.1f} s; draining", flush=True)
        await run.settled()
        # Drained: nothing stored and not acted on, paid and not credited, unrelayed, queued,
        # no refund open, no delivery waiting on its retry: twice in a row, a second apart.
        merchant = {"x-client-id": settings.cashfree_client_id, "x-client-secret": secret}
        quiet_n, deadline = 0, time.perf_counter() + args.drain_limit_s
        while quiet_n < 2 and time.perf_counter() < deadline:
            snap = await sample(db_conn, time.perf_counter() - started, queues)
            samples.append(snap)
            open_refunds = await db_conn.fetch(
                "SELECT count(*) FROM refunds WHERE status NOT IN ('SUCCESS', 'FAILED', "
                "'CANCELLED')"
            )
            busy = (
                snap.stored_not_acted
                + snap.paid_not_credited
                + snap.unrelayed
                + (snap.queued or 0)
                + int(open_refunds[0][0])
            )
            if busy == 0 and (await get_json(f"{tap}/_state"))["waiting"]:
                # A staged loss whose retry has not come: wait for it while the sandbox
                # still has a retry to make (it gives up after its last one).
                busy = await retries_due(sandbox, merchant)
            quiet_n = quiet_n + 1 if busy == 0 else 0
            await asyncio.sleep(1)
        drained_s = time.perf_counter() - started - 1
        watcher.stopping.set()
        await asyncio.to_thread(watcher.join)
        metrics = await api_histogram(api)
        cpu = {k: (tree_ticks(v) - cpu0[k]) / TICK for k, v in roots.items()}
        cpu["postgres"] = backends.ticks() / TICK
        cpu["driver"] = (driver_ticks() - driver0) / TICK
        tapped = await get_json(f"{tap}/_state?all=1")
        log = await get_json(
            f"{sandbox}/_sandbox/webhooks",
            **{"x-client-id": settings.cashfree_client_id, "x-client-secret": secret},
        )
        facts = await read_facts(db_conn)
        _, facts["dead_letters"] = await queues.depth()
    finally:
        await queues.close()
        await db_conn.conn.close()
        await asyncio.to_thread(stop, procs)
        events = _log_events(logs)
        shutil.rmtree(storage, ignore_errors=True)

    report = await verify(db)
    return tally(
        args=args,
        mix=mix,
        windows=windows,
        deliveries=[Delivery(**d) for d in tapped["deliveries"]],
        late=set(tapped["late"]),
        log=[d for d in log if d["url"].startswith(tap)],
        run=run,
        facts=facts,
        wall0=wall0,
        offered_s=offered_s,
        drained_s=drained_s,
        prepare_s=prepare_s,
        prepared=len(orders) + reserve_n,
        tps=tps,
        loads=loads,
        cpu=cpu,
        samples=samples,
        end_of=end_of,
        report=report,
        log_events=events,
        api_histogram=metrics,
    )


STARTED: list[subprocess.Popen[bytes]] = []


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _logged(logs: Path, name: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A stack process as payments_bench starts it, its output kept to count what it
    logged (retries, pool timeouts) for the report."""
    kind = name.rstrip("0123456789")
    with (logs / f"{name}.log").open("wb") as out:
        p = subprocess.Popen([*CLI, kind, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(p)
    return p


def _log_events(logs: Path) -> dict[str, int]:
    """How often each warning or error event was logged, over every process."""
    counts: dict[str, int] = {}
    for f in logs.glob("*.log"):
        for line in f.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("warning", "error"):
                name = f"{f.stem.rstrip('0123456789')}: {record.get('event')}"
                counts[name] = counts.get(name, 0) + 1
    return counts


def _spawn_tap(tap: str, api: str, seed: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = tap.rsplit(":", 1)[1]
    p = subprocess.Popen([sys.executable, __file__, "--serve-tap", port, api, str(seed)], env=env)
    STARTED.append(p)
    return p


async def retries_due(sandbox: str, merchant: dict[str, str]) -> int:
    """Events the sandbox has not delivered yet and will try again (fewer attempts than its
    schedule allows, none delivered)."""
    log = await get_json(f"{sandbox}/_sandbox/webhooks", **merchant)
    tries: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in log:
        tries.setdefault((d["idempotency_key"], d["url"]), []).append(d)
    return sum(
        1
        for attempts in tries.values()
        if not any(a["outcome"] == "delivered" for a in attempts)
        and max(a["attempt"] for a in attempts) < 1 + len(RETRIES_MIN)
    )


async def quiet(queues: Queues, db: Db, limit_s: float) -> None:
    """Until the outbox and the queues are empty twice a second apart (the order path's
    follow-up work, so that the replay starts on an idle stack)."""
    deadline, n = time.perf_counter() + limit_s, 0
    while n < 2 and time.perf_counter() < deadline:
        waiting, _ = await queues.depth()
        unrelayed = (await db.fetch("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))[0][0]
        n = n + 1 if waiting + unrelayed == 0 else 0
        await asyncio.sleep(1)


async def read_facts(db: Db) -> dict[str, Any]:
    webhooks = await db.fetch(
        """SELECT dedupe_key, event_type, order_id, status, duplicates, payment_id,
                  extract(epoch FROM received_at)::float8 AS received,
                  extract(epoch FROM processed_at)::float8 AS processed,
                  sha256(raw_body) AS digest
             FROM payment_webhooks"""
    )
    payments = await db.fetch(
        """SELECT p.id::text AS id, p.order_id, p.status,
                  extract(epoch FROM p.credited_at)::float8 AS credited,
                  (SELECT count(*) FROM credit_lots l WHERE l.source_ref = p.id::text
                    AND l.source = 'purchase') AS purchase_lots,
                  (SELECT count(*) FROM credit_lots l WHERE l.source_ref = p.id::text
                    AND l.source = 'bonus') AS bonus_lots,
                  (SELECT count(*) FROM ledger_journals j
                    WHERE j.idempotency_key = 'payment:' || p.id || ':inr') AS journals
             FROM payments p"""
    )
    refunds = await db.fetch(
        """SELECT f.id::text AS id, f.payment_id::text AS payment_id, f.status,
                  (SELECT count(*) FROM ledger_journals j
                    WHERE j.idempotency_key = 'refund:' || f.id || ':inr') AS journals,
                  (SELECT count(*) FROM wallet_transactions t
                    WHERE t.idempotency_key = 'refund:' || f.id || ':capture') AS captures
             FROM refunds f"""
    )
    held = await db.fetch(
        """SELECT coalesce(sum(available_credits + locked_credits), 0) FROM wallets
            WHERE id IN (SELECT wallet_id FROM payments)"""
    )
    return {
        "webhooks": [dict(r) for r in webhooks],
        "payments": {r["id"]: dict(r) for r in payments},
        "refunds": {r["payment_id"]: dict(r) for r in refunds},
        "held": int(held[0][0]),
    }


def tally(**k: Any) -> dict[str, Any]:
    run: Replay = k["run"]
    windows: list[Window] = k["windows"]
    deliveries: list[Delivery] = k["deliveries"]
    facts = k["facts"]
    payments, refunds = facts["payments"], facts["refunds"]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in facts["webhooks"]:
        by_key.setdefault(r["dedupe_key"].split(":differs:", 1)[0], []).append(r)
    payment_of = {o.order_id: o.payment_id for o in run.orders + run.reserve}

    # Deliveries and events.
    genuine = [d for d in deliveries if not d.source.startswith("forged")]
    reached = [d for d in genuine if d.status is not None]
    forged = [d for d in deliveries if d.source.startswith("forged")]
    events: dict[str, str] = {d.key: d.type for d in genuine}
    answered_200: dict[str, int] = {}
    for d in reached:
        if d.status == 200:
            answered_200[d.key] = answered_200.get(d.key, 0) + 1
    by_type: dict[str, int] = {}
    for kind in events.values():
        by_type[kind] = by_type.get(kind, 0) + 1
    stored_once = sum(1 for key in events if len(by_key.get(key, [])) == 1)
    missing = sum(1 for key in events if key not in by_key)
    extra_rows = sum(max(0, len(by_key.get(key, [])) - 1) for key in events)
    not_ours = len(set(by_key) - set(events))
    repeats_delivered = sum(n - 1 for n in answered_200.values())
    repeats_counted = sum(r["duplicates"] for key in events for r in by_key.get(key, []))
    sent_by_sandbox = {(d["idempotency_key"], d["entity_id"]) for d in k["log"]}
    delivered = {
        (d["idempotency_key"], d["entity_id"]) for d in k["log"] if d["outcome"] == "delivered"
    }

    # Money.
    paid_orders = {d.order_id for d in genuine if d.type == "PAYMENT_SUCCESS_WEBHOOK"}
    once = extra_grants = 0
    for oid in paid_orders:
        p = payments[payment_of[str(oid)]]
        lots = (p["purchase_lots"], p["bonus_lots"], p["journals"])
        once += p["status"] == "CREDITED" and lots == (1, 1, 1)
        extra_grants += sum(max(0, n - 1) for n in lots)
    never_paid = run.abandoned + run.reserve
    never_paid_credited = sum(
        1
        for o in never_paid
        if payments[o.payment_id]["status"] in ("PAID", "CREDITED")
        or payments[o.payment_id]["purchase_lots"]
    )
    abandoned_right = sum(
        1
        for o in run.abandoned
        if payments[o.payment_id]["status"]
        == ("FAILED" if o.scenario == "failed" else "USER_DROPPED")
    )
    refunded_once = sum(
        1
        for pid in run.refunds
        if pid in refunds
        and refunds[pid]["status"] == "SUCCESS"
        and (refunds[pid]["journals"], refunds[pid]["captures"]) == (1, 1)
    )
    extra_refunds = sum(
        max(0, r["journals"] - 1) + max(0, r["captures"] - 1) for r in refunds.values()
    )
    expected_held = CREDITS * (once - refunded_once)
    surplus = facts["held"] - expected_held
    twice = extra_grants + extra_refunds + max(0, -(-surplus // CREDITS))
    out_of_order = 0
    for oid in k["late"]:
        rows = [r for r in facts["webhooks"] if r["order_id"] == oid]
        fails = [r["received"] for r in rows if r["event_type"] == "PAYMENT_FAILED_WEBHOOK"]
        wins = [r["received"] for r in rows if r["event_type"] == "PAYMENT_SUCCESS_WEBHOOK"]
        out_of_order += bool(fails and wins and min(fails) > min(wins))

    # Forged: refused, stored nowhere.
    digests = {bytes(r["digest"]) for r in facts["webhooks"]}
    forged_stored = sum(
        1 for _, body, _, _ in run.forged if hashlib.sha256(body).digest() in digests
    )
    forged_refused = sum(1 for d in forged if d.status == 401)
    forged_codes: dict[str, int] = {}
    for d in forged:
        forged_codes[d.outcome] = forged_codes.get(d.outcome, 0) + 1

    # From an event's first arrival at our API to its effect: a success's credits, a
    # failure's move, a refund's settlement (the worker marks the webhook processed in the
    # transaction that acts on it).
    lags: dict[str, list[float]] = {"success": [], "failure": [], "refund": []}
    for key, kind in events.items():
        stored = by_key.get(key)
        if not stored:
            continue
        r = stored[0]
        if kind == "PAYMENT_SUCCESS_WEBHOOK" and r["payment_id"] is not None:
            credited = payments[str(r["payment_id"])]["credited"]
            if credited is not None:
                lags["success"].append(credited - r["received"])
        elif kind == "REFUND_STATUS_WEBHOOK" and r["processed"] is not None:
            lags["refund"].append(r["processed"] - r["received"])
        elif kind.startswith("PAYMENT_") and r["processed"] is not None:
            lags["failure"].append(r["processed"] - r["received"])
    all_lags = [x for v in lags.values() for x in v]

    # Offered against handled, per window (by when the API's answer came).
    wall0: float = k["wall0"]
    per_window = []
    for w in windows:
        lo, hi = wall0 + w.start, wall0 + w.start + w.seconds
        came = [d for d in deliveries if lo <= d.sent < hi]
        checkouts = sum(1 for t in run.checkouts if lo <= t < hi)
        in_w = [d for d in deliveries if d.status is not None and lo <= d.sent + d.latency < hi]
        lat = [d.latency for d in in_w if not d.source.startswith("forged")]
        credited = sum(1 for p in payments.values() if p["credited"] and lo <= p["credited"] < hi)
        per_window.append(
            {
                "window": w.name,
                "hour": w.hour,
                "seconds": w.seconds,
                "offered_per_s": w.rate,
                "checkouts_per_s": checkouts / w.seconds,
                "arrived_per_s": len(came) / w.seconds,
                "answered_per_s": len(in_w) / w.seconds,
                "credited_per_s": credited / w.seconds,
                "ingest_p50_ms": pct(lat, 50) * 1000,
                "ingest_p99_ms": pct(lat, 99) * 1000,
                "backlog_at_end": asdict(k["end_of"][w.name]) if w.name in k["end_of"] else None,
            }
        )
    latencies = [d.latency for d in reached]
    answered = sum(1 for d in deliveries if d.status is not None)
    report: VerifyReport = k["report"]
    cpu: dict[str, float] = k["cpu"]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "speedup": k["args"].speedup,
        "jitter_ms": k["args"].jitter_ms,
        "workers": k["args"].workers,
        "seed": k["args"].seed,
        "windows": per_window,
        "prepared_orders": k["prepared"],
        "prepare_s": k["prepare_s"],
        "pgbench_tps": k["tps"],
        "load_1min": k["loads"],
        "offered_s": k["offered_s"],
        "drained_s": k["drained_s"],
        "driver_late_p99_s": pct(run.lateness, 99),
        "orders_played": run.next,
        "deliveries": {
            "answered_by_api": answered,
            "genuine_reached_api": len(reached),
            "genuine_200": sum(1 for d in reached if d.status == 200),
            "genuine_not_200": sum(1 for d in reached if d.status != 200),
            "lost_requests": sum(1 for d in deliveries if d.fate == "lost_request"),
            "lost_answers": sum(1 for d in deliveries if d.fate == "lost_answer"),
            "doubled": sum(1 for d in deliveries if d.source == "doubled"),
            "sandbox_attempts": len(k["log"]),
            "sandbox_retries": sum(1 for d in k["log"] if d["attempt"] > 1),
            "sandbox_events": len(sent_by_sandbox),
            "sandbox_given_up": len(sent_by_sandbox - delivered),
            "settlements": run.settlements,
            "forged": len(forged),
            "forged_refused_401": forged_refused,
            "forged_answers": forged_codes,
        },
        "events": {
            "total": len(events),
            "by_type": by_type,
            "never_answered_200": sum(1 for key in events if key not in answered_200),
            "stored_once": stored_once,
            "missing": missing,
            "extra_rows": extra_rows,
            "rows_not_from_the_replay": not_ours,
            "repeats_delivered": repeats_delivered,
            "repeats_counted": repeats_counted,
            "late_failures": len(k["late"]),
            "out_of_order": out_of_order,
        },
        "payments": {
            "paid_at_sandbox": len(paid_orders),
            "paid_by_buyers": sum(1 for o in run.orders if o.paid),
            "credited_once": once,
            "lost": max(0, len(paid_orders) - once),
            "twice": twice,
            "abandoned": len(run.abandoned),
            "abandoned_ended_failed_or_dropped": abandoned_right,
            "never_paid_credited": never_paid_credited,
            "refunds_requested": len(run.refunds),
            "refunded_once": refunded_once,
            "wallets_held": facts["held"],
            "wallets_expected": expected_held,
        },
        "forged_stored": forged_stored,
        "dead_letters": facts["dead_letters"],
        "api_webhook_histogram": k["api_histogram"],
        "checkouts_sent_again": run.checkouts_sent_again,
        "checkouts_unanswered_but_done": run.unanswered_checkouts,
        "logged": k["log_events"],
        "errors": run.errors,
        "ingest_ms": {"p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000},
        "forged_ms_p50": pct([d.latency for d in forged if d.latency], 50) * 1000,
        "lag_s": {
            "p50": pct(all_lags, 50),
            "p99": pct(all_lags, 99),
            **{f"{name}_p50": pct(v, 50) for name, v in lags.items()},
            **{f"{name}_p99": pct(v, 99) for name, v in lags.items()},
            **{f"{name}_n": len(v) for name, v in lags.items()},
        },
        "cpu_s": cpu,
        "cpu_ms_per_delivery": {name: v * 1000 / max(1, answered) for name, v in cpu.items()},
        "backlog": [asdict(x) for x in k["samples"]],
        "ledger_verify": {"ok": report.ok, "stats": report.stats},
        "ledger_findings": [str(f) for f in report.findings][:20],
    }


# --- the report ----------------------------------------------------------------------------


def publish(args: argparse.Namespace, r: dict[str, Any], command: str) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "webhook_day.json").write_text(json.dumps(r, indent=1, default=str))
    d, e, p = r["deliveries"], r["events"], r["payments"]
    handled = d["answered_by_api"] / r["drained_s"]
    mix_rows = "".join(
        f"| {name} | {n:,.0f} | {_replayed(name, r):,} |\n" for name, n in Mix().per_day().items()
    )
    windows = "".join(
        f"| {w['window']} ({w['hour']:02d}:00 IST) | {w['seconds']:g} s | "
        f"{w['offered_per_s']:.1f}/s | {w['checkouts_per_s']:.1f}/s | {w['arrived_per_s']:.1f}/s | "
        f"{w['answered_per_s']:.1f}/s | "
        f"{w['credited_per_s']:.1f}/s | {w['ingest_p50_ms']:,.0f} / {w['ingest_p99_ms']:,.0f} ms | "
        f"{_backlog_text(w['backlog_at_end'])} |\n"
        for w in r["windows"]
    )
    cpu = r["cpu_ms_per_delivery"]
    lag = r["lag_s"]
    retried = sum(n for name, n in r["logged"].items() if name.endswith("queue.message.retry"))
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    loss = (
        "| check | count | expected | holds |\n|---|---:|---:|---|\n"
        f"| events the sandbox sent (payments, refunds) + settlements sent | "
        f"{e['total']:,} | | |\n"
        f"| … answered 200 by our API in the end | {e['total'] - e['never_answered_200']:,} | "
        f"{e['total']:,} | {ok(e['never_answered_200'] == 0)} |\n"
        f"| … counted failed by the sandbox in the end (our 200 came after its timeout; "
        f"Cashfree's view, not a loss of ours) | {d['sandbox_given_up']} | 0 | "
        f"{'yes' if d['sandbox_given_up'] == 0 else 'see below'} |\n"
        f"| … stored exactly once (one row per event) | {e['stored_once']:,} | {e['total']:,} | "
        f"{ok(e['stored_once'] == e['total'])} |\n"
        f"| repeats delivered (Cashfree's retries, doubles) / counted on their row | "
        f"{e['repeats_delivered']} | {e['repeats_counted']} | "
        f"{ok(e['repeats_delivered'] == e['repeats_counted'])} |\n"
        f"| payments paid at the sandbox / credited exactly once | {p['paid_at_sandbox']:,} | "
        f"{p['credited_once']:,} | {ok(p['paid_at_sandbox'] == p['credited_once'])} |\n"
        f"| lost / credited twice | {p['lost']} / {p['twice']} | 0 / 0 | "
        f"{ok(p['lost'] == 0 and p['twice'] == 0)} |\n"
        f"| orders abandoned (failed, dropped) ending FAILED / USER_DROPPED | "
        f"{p['abandoned_ended_failed_or_dropped']:,} | {p['abandoned']:,} | "
        f"{ok(p['abandoned'] == p['abandoned_ended_failed_or_dropped'])} |\n"
        f"| never-paid orders credited (abandoned + forgery targets) | "
        f"{p['never_paid_credited']} | 0 | {ok(p['never_paid_credited'] == 0)} |\n"
        f"| refunds asked / settled exactly once | {p['refunds_requested']} | "
        f"{p['refunded_once']} | {ok(p['refunds_requested'] == p['refunded_once'])} |\n"
        f"| credits in the buyers' wallets / 3 200 x (credited - refunded) | "
        f"{p['wallets_held']:,} | {p['wallets_expected']:,} | "
        f"{ok(p['wallets_held'] == p['wallets_expected'])} |\n"
        f"| forged deliveries / refused 401 | {d['forged']} | {d['forged_refused_401']} | "
        f"{ok(d['forged'] == d['forged_refused_401'])} |\n"
        f"| forged deliveries stored | {r['forged_stored']} | 0 | {ok(r['forged_stored'] == 0)} |\n"
        f"| rows not from the replay | {e['rows_not_from_the_replay']} | 0 | "
        f"{ok(e['rows_not_from_the_replay'] == 0)} |\n"
        f"| dead letters | {r['dead_letters']} | 0 | {ok(r['dead_letters'] == 0)} |\n"
        f"| bench errors (a checkout or refund that failed) | {len(r['errors'])} | 0 | "
        f"{ok(not r['errors'])} |\n"
        f"| `ledger verify` after sealing | {'clean' if r['ledger_verify']['ok'] else 'FINDINGS'} "
        f"| clean | {ok(r['ledger_verify']['ok'])} |\n"
    )
    measures = (
        "| measure | value |\n|---|---:|\n"
        f"| pgbench TPC-B, 16 clients, same run | {r['pgbench_tps']:,.0f} tps |\n"
        f"| deliveries answered by the API / from the first to drained | "
        f"{d['answered_by_api']:,} in {r['drained_s']:.0f} s = {handled:.1f}/s "
        f"(ratio to pgbench {handled / r['pgbench_tps']:.4f}) |\n"
        f"| ingest latency (the API's answer, as the tap saw it), p50 / p99 | "
        f"{r['ingest_ms']['p50']:,.1f} / {r['ingest_ms']['p99']:,.1f} ms |\n"
        f"| … inside the API (its own histogram): answered within 25 ms / 250 ms / 1 s | "
        f"{_within(r, '0.025')} / {_within(r, '0.25')} / {_within(r, '1.0')} |\n"
        f"| lag from webhook to effect, all, p50 / p99 | "
        f"{lag['p50']:,.1f} / {lag['p99']:,.1f} s |\n"
        f"| … payment success to credits ({lag['success_n']}) | "
        f"{lag['success_p50']:,.1f} / {lag['success_p99']:,.1f} s |\n"
        f"| … failure or drop to the payment's move ({lag['failure_n']}) | "
        f"{lag['failure_p50']:,.1f} / {lag['failure_p99']:,.1f} s |\n"
        f"| … refund webhook to the refund settled ({lag['refund_n']}) | "
        f"{lag['refund_p50']:,.2f} / {lag['refund_p99']:,.2f} s |\n"
        f"| CPU per delivery answered: API | {cpu['api']:.1f} ms |\n"
        f"| … workers ({r['workers']}) | {cpu['worker']:.1f} ms |\n"
        f"| … PostgreSQL (this database's backends) | {cpu['postgres']:.1f} ms |\n"
        f"| … sandbox / tap / driver | {cpu['sandbox']:.1f} / {cpu['tap']:.1f} / "
        f"{cpu['driver']:.1f} ms |\n"
        f"| the sandbox's retries: all / for a lost answer or request we staged | "
        f"{d['sandbox_retries']} / {d['lost_answers'] + d['lost_requests']} |\n"
        f"| checkouts unanswered (found done at the sandbox / sent again) | "
        f"{r['checkouts_unanswered_but_done']} / {r['checkouts_sent_again']} |\n"
        f"| out of order: a FAILED delivery stored after its order's success | "
        f"{e['out_of_order']} of the {e['late_failures']} staged |\n"
        f"| messages sent to a retry tier (workers) / of them for a pool timeout | {retried} / "
        f"{r['logged'].get('worker: db.unavailable', 0)} |\n"
        f"| the driver's lateness against the schedule, p99 | {r['driver_late_p99_s']:.2f} s |\n"
        f"| orders opened through the API beforehand | {r['prepared_orders']:,} in "
        f"{r['prepare_s']:.0f} s |\n"
    )
    block = (
        f"Last run {r['when']} on {os.cpu_count()} cores, load (1 min) "
        + " → ".join(f"{x:.1f}" for x in r["load_1min"])
        + f" (before pgbench, replay start, replay end):\n\n    {command}\n\n"
        f"{d['answered_by_api']:,} deliveries reached the API "
        f"({r['orders_played']:,} orders played), "
        f"offered over {sum(w['seconds'] for w in r['windows']):g} s at {r['speedup']:g}x "
        f"the day; drained {r['drained_s']:.0f} s after the replay began.\n\n"
        "| kind | a day of 1M (the mix) | replayed |\n|---|---:|---:|\n"
        f"{mix_rows}\n"
        "| window | length | offered | checkouts made | arrived at our URL | answered by the API | "
        "credited | ingest p50 / p99 | backlog at its end |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
        f"{windows}\n{measures}\n{loss}"
    )
    if not args.no_docs:
        write_docs_block("webhook-day", block)
    print(block)


def _replayed(name: str, r: dict[str, Any]) -> int:
    d, types = r["deliveries"], r["events"]["by_type"]
    if name.startswith("repeats: Cashfree"):
        return int(d["lost_answers"])
    if name.startswith("repeats: delivered twice"):
        return int(d["doubled"])
    if name.startswith("forged"):
        return int(d["forged"])
    return int(types.get(name, 0))


def _within(r: dict[str, Any], le: str) -> str:
    share = r["api_webhook_histogram"].get(le)
    return "—" if share is None else f"{share:.0%}"


def _backlog_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "—"
    return (
        f"{s['stored_not_acted']} stored not acted on, {s['paid_not_credited']} paid not "
        f"credited, {s['unrelayed']} in the outbox, {s['queued']} queued"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-tap":
        port, api, seed = sys.argv[2:5]
        secret = Settings().cashfree_client_secret.get_secret_value()
        serve_tap(int(port), api, secret, int(seed))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--speedup", type=float, default=10)
    parser.add_argument("--peak-s", type=float, default=30)
    parser.add_argument("--quiet-s", type=float, default=60)
    parser.add_argument("--peak-hour", type=int, default=20, choices=range(24))
    parser.add_argument("--quiet-hour", type=int, default=3, choices=range(24))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jitter-ms", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=Settings().consumer_prefetch)
    parser.add_argument("--drain-limit-s", type=float, default=1800)
    # How long the sandbox waits for our answer before it counts a delivery failed and
    # retries it (Cashfree does not publish its own).
    parser.add_argument("--webhook-timeout-s", type=float, default=30)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    command = (
        f".venv/bin/python bench/webhook_day.py --speedup {args.speedup:g} --peak-s "
        f"{args.peak_s:g} --quiet-s {args.quiet_s:g} --peak-hour {args.peak_hour} "
        f"--quiet-hour {args.quiet_hour} --workers {args.workers} --prefetch {args.prefetch} "
        f"--jitter-ms {args.jitter_ms} --webhook-timeout-s {args.webhook_timeout_s:g} "
        f"--seed {args.seed}"
    )

    # Stopped with SIGTERM (or Ctrl-C in a background job, which ignores SIGINT): unwind, so
    # the finally blocks stop the stack and drop the database and queues.
    signal.signal(signal.SIGTERM, _interrupted)
    tag = uuid.uuid4().hex[:8]
    db, pgb, prefix = f"cdb_whday_{tag}", f"cdb_whdaypgb_{tag}", f"whday{tag}."
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    try:
        upgrade(db_url(db))
        pgbench_init(pgb, 16)
        result = asyncio.run(replay(args, db, prefix, pgb))
    finally:
        stop([p for p in STARTED if p.poll() is None])
        asyncio.run(_drop_queues(prefix))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))
    publish(args, result, command)
    failed = [
        result["events"]["never_answered_200"],
        result["events"]["missing"],
        result["events"]["extra_rows"],
        result["payments"]["lost"],
        result["payments"]["twice"],
        result["payments"]["never_paid_credited"],
        result["forged_stored"],
        result["deliveries"]["forged"] - result["deliveries"]["forged_refused_401"],
        result["dead_letters"] or 0,
        result["events"]["repeats_delivered"] != result["events"]["repeats_counted"],
        result["payments"]["wallets_held"] != result["payments"]["wallets_expected"],
        result["payments"]["refunds_requested"] != result["payments"]["refunded_once"],
        result["payments"]["abandoned"] != result["payments"]["abandoned_ended_failed_or_dropped"],
        len(result["errors"]),
        0 if result["ledger_verify"]["ok"] else 1,
    ]
    if any(failed):
        raise SystemExit("zero loss NOT shown: see the table above")


if __name__ == "__main__":
    main()
