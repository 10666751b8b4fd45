"""The rate limits, as an ASGI middleware in front of routing.

Every request but a webhook is decided before anything else runs (its body is not read, no
token is looked up in a database): its route class (`routes.py`), then one bucket for the
caller (the token's `sub`, when the token verifies) and one for its address, both decided
together (`gcra.py`). A refusal is 429 `rate_limited` (problem+json) with `Retry-After`;
every answer that was counted carries `RateLimit-Policy` and `RateLimit`
(draft-ietf-httpapi-ratelimit-headers, structured fields).

Cashfree's webhooks are decided *after* their route has checked the signature: a delivery
the route refused (4xx: unsigned, forged, stale, malformed) is charged to its source
address's bucket and turned into 429 once that is spent; a correctly signed delivery is
never charged and never refused here. So a flood of forged deliveries from anywhere cannot
keep a real one out.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.config import Settings
from commdesk_billing.problems import MEDIA_TYPE, problem_body
from commdesk_billing.security import addresses
from commdesk_billing.security.jwt import InvalidToken, Principal, Role, verifier_of
from commdesk_billing.security.ratelimit.gcra import US, Bucket, Decision, Policy
from commdesk_billing.security.ratelimit.limiter import Limiter
from commdesk_billing.security.ratelimit.routes import Classifier, RouteClass
from commdesk_billing.telemetry.metrics import RATE_LIMIT_DECISIONS

CODE = "rate_limited"


@dataclass(frozen=True)
class Policies:
    user: dict[RouteClass, Policy]
    service: dict[RouteClass, Policy]
    ip: dict[RouteClass, Policy]

    @classmethod
    def from_settings(cls, s: Settings) -> Policies:
        w = s.rate_limit_window_s
        f = s.rate_limit_service_factor
        per_user = {
            RouteClass.orders: (s.rate_limit_orders_user, s.rate_limit_orders_user_burst),
            RouteClass.money: (s.rate_limit_money_user, s.rate_limit_money_user_burst),
            RouteClass.reads: (s.rate_limit_reads_user, s.rate_limit_reads_user_burst),
        }
        per_ip = {
            RouteClass.orders: (s.rate_limit_orders_ip, s.rate_limit_orders_ip_burst),
            RouteClass.money: (s.rate_limit_money_ip, s.rate_limit_money_ip_burst),
            RouteClass.reads: (s.rate_limit_reads_ip, s.rate_limit_reads_ip_burst),
            RouteClass.webhooks: (s.rate_limit_webhooks_ip, s.rate_limit_webhooks_ip_burst),
        }
        return cls(
            user={c: Policy(c.value, r, w, b) for c, (r, b) in per_user.items()},
            service={
                c: Policy(f"{c.value}-service", r * f, w, b * f) for c, (r, b) in per_user.items()
            },
            ip={c: Policy(f"{c.value}-ip", r, w, b) for c, (r, b) in per_ip.items()},
        )


def client_address(scope: Scope) -> str | None:
    """The caller's address, as every per-address rule reads it (`security/addresses.py`:
    X-Forwarded-For only from the trusted proxies of the app's settings)."""
    return addresses.client_ip(scope)


def address_key(ip: str | None) -> str:
    """One bucket per IPv4 address and per IPv6 /64 (one host is handed a whole /64)."""
    if ip is None:
        return "none"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "invalid"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False).network_address) + "/64"
    return str(addr)


def _bearer(scope: Scope) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == b"authorization":
            scheme, _, token = v.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def policy_header(buckets: list[Bucket]) -> bytes:
    return ", ".join(
        f'"{b.policy.name}";q={b.policy.rate};w={b.policy.window_s}' for b in buckets
    ).encode()


def state_header(buckets: list[Bucket], decision: Decision) -> bytes:
    # t: whole seconds until the bucket is full again (rounded up).
    return ", ".join(
        f'"{b.policy.name}";r={lv.remaining};t={-(-lv.full_in_us // US)}'
        for b, lv in zip(buckets, decision.levels, strict=True)
    ).encode()


def _headers(buckets: list[Bucket], decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-policy", policy_header(buckets)),
        (b"ratelimit", state_header(buckets, decision)),
    ]


class RateLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.enabled = settings.rate_limit_enabled
        self.policies = Policies.from_settings(settings)
        self.classifier = Classifier()
        self.limiter = Limiter(settings.rate_limit_local_max_keys)

    async def caller(self, scope: Scope) -> Principal | None:
        """Who the bearer token says, if it verifies (else the route answers 401 and only
        the address is counted). The one place a token is read here: where the request
        path verifies tokens differently (RS256 against a JWKS), this follows it."""
        token = _bearer(scope)
        if token is None:
            return None
        app = scope.get("app")
        if app is None:
            return None
        try:
            # The routes' own verifier (RS256 against the JWKS, its key cache shared).
            return await verifier_of(app.state).verify(token)
        except InvalidToken:
            return None

    async def _buckets(self, scope: Scope, cls: RouteClass) -> list[Bucket]:
        buckets: list[Bucket] = []
        who = await self.caller(scope)
        if who is not None:
            if who.role is Role.service:
                # Another CommDesk service, acting for many members from few addresses.
                return [Bucket(self.policies.service[cls], f"rl:{cls.value}:s:{who.sub}")]
            buckets.append(Bucket(self.policies.user[cls], f"rl:{cls.value}:u:{who.sub}"))
        ip = address_key(client_address(scope))
        buckets.append(Bucket(self.policies.ip[cls], f"rl:{cls.value}:ip:{ip}"))
        return buckets

    async def _decide(self, scope: Scope, cls: RouteClass, buckets: list[Bucket]) -> Decision:
        store = getattr(scope["app"].state, "redis", None) if "app" in scope else None
        decision = await self.limiter.acquire(store, buckets)
        outcome = "allowed" if decision.allowed else "limited"
        RATE_LIMIT_DECISIONS.labels(cls.value, outcome, decision.backend).inc()
        return decision

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        _template, cls = self.classifier.classify(scope["method"], scope["path"])
        if cls is RouteClass.exempt:
            await self.app(scope, receive, send)
            return
        if cls is RouteClass.webhooks:
            await self._webhook(scope, receive, send)
            return
        buckets = await self._buckets(scope, cls)
        decision = await self._decide(scope, cls, buckets)
        if not decision.allowed:
            await _refuse(send, cls, buckets, decision)
            return
        extra = _headers(buckets, decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = False

        async def charge_refusals(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if 400 <= status < 500:
                    ip = address_key(client_address(scope))
                    policy = self.policies.ip[RouteClass.webhooks]
                    buckets = [Bucket(policy, f"rl:webhooks:ip:{ip}")]
                    decision = await self._decide(scope, RouteClass.webhooks, buckets)
                    if not decision.allowed:
                        replaced = True
                        await _refuse(send, RouteClass.webhooks, buckets, decision)
                        return
                    message["headers"] = [
                        *message.get("headers", []),
                        *_headers(buckets, decision),
                    ]
            elif replaced:
                return  # the refused answer's body: the 429 was sent instead
            await send(message)

        await self.app(scope, receive, charge_refusals)


async def _refuse(send: Send, cls: RouteClass, buckets: list[Bucket], decision: Decision) -> None:
    retry = decision.retry_after_s
    body = json.dumps(
        problem_body(
            status=429,
            code=CODE,
            title="Too many requests",
            detail=f"the {cls.value} rate limit is spent; retry after {retry} s",
            retry_after_s=retry,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
                *_headers(buckets, decision),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
