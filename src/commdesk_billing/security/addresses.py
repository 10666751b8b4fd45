"""Who sent a request: the client's address behind our own proxies, and allow-lists.

`client_ip(scope)` is the one reading of the sender's address for everything that wants it
(webhook allow-lists, rate limits, fraud features, audit rows): X-Forwarded-For counts only
when the TCP peer is one of our trusted proxies (BILLING_TRUSTED_PROXIES: Traefik's
networks), and then only its right-most address that is not one of them — everything
further left was written by the client and could be anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from starlette.types import Scope

from commdesk_billing.config import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_STATE_KEY = "client_ip"


@lru_cache(maxsize=16)
def networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _address(text: str) -> Address | None:
    """An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`; an
    IPv4-mapped IPv6 address is its IPv4 address (the same client either way)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forwarded_client(
    trusted: Sequence[Network], peer: str | None, forwarded_for: Iterable[str]
) -> str | None:
    """The sender's address from the TCP peer and every X-Forwarded-For line (in order).

    Walking from the right, each hop a trusted proxy wrote is passed over; the first one
    that is not trusted is the client. A hop that is not an address at all stops the walk:
    the proxy that passed it on is the last address known to be true."""
    if peer is None:
        return None
    nearest = _address(peer)
    if nearest is None:
        return peer

    def is_trusted(ip: Address) -> bool:
        return any(ip.version == net.version and ip in net for net in trusted)

    if not is_trusted(nearest):
        return str(nearest)
    hops = [h for line in forwarded_for for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:
            return str(nearest)
        nearest = ip
        if not is_trusted(ip):
            return str(ip)
    # Every hop is one of ours (a health check from inside): the left-most is the sender.
    return str(nearest)


def client_ip(scope: Scope) -> str | None:
    """The client's address for this request (None on a Unix socket with no peer).

    Reads the trusted networks from the app's settings (`scope["app"].state.settings`,
    set by `create_app`); without them no proxy is trusted and the peer is the client.
    Computed once per request and kept on the scope's state."""
    state: dict[str, Any] = scope.setdefault("state", {})
    if _STATE_KEY in state:
        cached: str | None = state[_STATE_KEY]
        return cached
    peer_pair = scope.get("client")
    peer = str(peer_pair[0]) if peer_pair else None
    settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
    trusted = networks(settings.trusted_proxies) if isinstance(settings, Settings) else ()
    lines = [
        value.decode("latin-1")
        for name, value in scope.get("headers") or ()
        if name == b"x-forwarded-for"
    ]
    ip = forwarded_client(trusted, peer, lines)
    state[_STATE_KEY] = ip
    return ip


def ip_allowed(settings: Settings, ip: str | None) -> bool:
    """Whether `ip` may deliver webhooks (`BILLING_WEBHOOK_ALLOWED_IPS`; empty: anyone)."""
    if not settings.webhook_allowed_ips:
        return True
    if ip is None:
        return False
    addr = _address(ip)
    if addr is None:
        return False
    return any(
        addr.version == net.version and addr in net
        for net in networks(settings.webhook_allowed_ips)
    )
