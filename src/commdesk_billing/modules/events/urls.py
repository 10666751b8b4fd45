"""Which URLs an endpoint may have, so that billing's outbound POSTs cannot be aimed at our
own network (SSRF).

Production: https only, no credentials in the URL, and the host must be public: an IP
literal must be a global address, and a name must resolve (now, and again before every
send: `check_resolved`) to global addresses only — never loopback, private (RFC 1918, ULA),
link-local (the cloud metadata address), CGNAT, multicast or reserved. Outside production:
https anywhere, and plain http to a loopback address only (a receiver on the developer's
machine, the tests').
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from commdesk_billing.config import Environment, Settings

_RESOLVE_TIMEOUT_S = 3.0
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class UrlRefused(ValueError):
    """The reason, for the caller (it names the rule, not our network)."""


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _loopback(host: str) -> bool:
    ip = _ip(host)
    return host.lower() in _LOOPBACK_NAMES or (ip is not None and ip.is_loopback)


def parse(settings: Settings, url: str) -> SplitResult:
    """The URL's parts when its form is acceptable (resolution is `check_resolved`)."""
    if len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        raise UrlRefused("the URL must be at most 2048 printable characters, no spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("the URL is not valid") from exc
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise UrlRefused("the URL must be https://host/path")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not carry credentials")
    if parts.fragment:
        raise UrlRefused("the URL must not have a fragment")
    if port == 0:
        raise UrlRefused("the URL's port is not valid")
    production = settings.env is Environment.production
    if parts.scheme == "http" and (production or not _loopback(host)):
        raise UrlRefused(
            "the URL must use https"
            + ("" if production else " (plain http is allowed to a loopback address only)")
        )
    if production:
        ip = _ip(host)
        if host.lower() in _LOOPBACK_NAMES or (ip is not None and not _public(ip)):
            raise UrlRefused("the URL's host must be a public address")
    return parts


async def check_resolved(settings: Settings, url: str) -> None:
    """Production: every address the host resolves to is public (refused otherwise, and
    when it does not resolve). Outside production: nothing to check."""
    if settings.env is not Environment.production:
        return
    parts = parse(settings, url)
    host = parts.hostname or ""
    if _ip(host) is not None:
        return  # checked by `parse`
    await public_address(host, parts.port or 443)


async def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`: resolved once, every address it gave public
    (else refused). Connecting to this very address, not resolving the name again, is what
    stops a name that answers public once and private a moment later (DNS rebinding)."""
    literal = _ip(host.strip("[]"))
    if literal is not None:
        if not _public(literal):
            raise UrlRefused("the URL's host must be a public address")
        return str(literal)
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a name IDNA refuses
        raise UrlRefused("the URL's host does not resolve") from exc
    addresses = [_ip(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or any(a is None or not _public(a) for a in addresses):
        raise UrlRefused("the URL's host must resolve to public addresses only")
    return str(addresses[0])
