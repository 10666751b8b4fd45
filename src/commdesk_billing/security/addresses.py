"""Who sent a request: the client's address behind our own proxies, and allow-lists.

Used by the webhook receiver today (Cashfree's published source addresses) and meant for
every per-IP rule (rate limits, fraud features): one reading of X-Forwarded-For for all.
"""

from __future__ import annotations

import ipaddress

from commdesk_billing.config import Settings


def client_ip(settings: Settings, peer: str | None, forwarded_for: str | None) -> str | None:
    """The sender's address: the TCP peer, or the last untrusted hop of X-Forwarded-For when
    the peer is one of our trusted proxies (anything further left could be forged)."""
    if peer is None:
        return None
    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def ip_allowed(settings: Settings, ip: str | None) -> bool:
    """Whether `ip` may deliver webhooks (`BILLING_WEBHOOK_ALLOWED_IPS`; empty: anyone)."""
    if not settings.webhook_allowed_ips:
        return True
    if ip is None:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in settings.webhook_allowed_ips)
