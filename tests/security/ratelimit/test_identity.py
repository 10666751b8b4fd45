"""Whose bucket a request is charged to: the address (IPv6 by /64, X-Forwarded-For only from
a trusted proxy), the verified token's subject, a service's own bucket."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.security.ratelimit.middleware import (
    RateLimits,
    address_key,
    client_address,
)
from commdesk_billing.security.ratelimit.routes import RouteClass


def _scope(
    peer: str, headers: list[tuple[bytes, bytes]] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    # The app's state, as the middleware finds it: the settings (trusted proxies, keys).
    app = SimpleNamespace(state=SimpleNamespace(settings=settings or Settings()))
    return {"type": "http", "client": (peer, 5000), "headers": headers or [], "app": app}


def test_address_keys() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    # One host is handed a /64: its addresses share one bucket.
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key(None) == "none"
    assert address_key("not-an-ip") == "invalid"


def test_forwarded_for_only_from_a_trusted_proxy() -> None:
    xff = [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.9")]
    untrusted = Settings()
    assert client_address(_scope("10.0.0.5", xff, untrusted)) == "10.0.0.5"
    trusted = Settings(trusted_proxies=("10.0.0.0/8",))
    # The last hop our proxy saw; anything further left could be forged by the caller.
    assert client_address(_scope("10.0.0.5", xff, trusted)) == "203.0.113.9"
    assert client_address(_scope("10.0.0.5", None, trusted)) == "10.0.0.5"


async def test_buckets_by_caller() -> None:
    s = Settings()
    limits = RateLimits(lambda *_: None, s)  # type: ignore[arg-type, return-value]
    member = issue_token(s, sub="m-1", role=Role.member)
    service = issue_token(s, sub="svc-1", role=Role.service)
    other_key = issue_token(
        s.model_copy(update={"jwt_secret": SecretStr("x" * 40)}), sub="m-1", role=Role.member
    )

    async def keys(token: str | None) -> list[tuple[str, str]]:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        return [
            (b.policy.name, b.key)
            for b in await limits._buckets(_scope("192.0.2.4", headers, s), RouteClass.money)
        ]

    assert await keys(member) == [
        ("money", "rl:money:u:m-1"),
        ("money-ip", "rl:money:ip:192.0.2.4"),
    ]
    assert await keys(service) == [("money-service", "rl:money:s:svc-1")]
    # A token that does not verify names nobody: only the address is charged, so a forger
    # cannot spend someone else's bucket.
    assert await keys(other_key) == [("money-ip", "rl:money:ip:192.0.2.4")]
    assert await keys(None) == [("money-ip", "rl:money:ip:192.0.2.4")]
