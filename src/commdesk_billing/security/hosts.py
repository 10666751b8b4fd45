"""Allowed `Host` values: we answer only for names we are served under.

A request for another name is someone else's traffic or an attack on names we build from it
(DNS rebinding from a browser, poisoned links in caches); it is refused with 400
`host_not_allowed` before any route runs. The health and metrics endpoints are exempt: the
orchestrator's probes and Prometheus reach the process by its own address, not by our name.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from commdesk_billing.security.hygiene import send_problem

CODE = "host_not_allowed"
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def host_name(value: str) -> str:
    """The name of a Host header value, lower case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class AllowedHosts:
    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        # Duplicates were refused outside (hpp.py); a missing Host (HTTP/1.0) is refused too.
        raw = next((v for n, v in scope.get("headers") or () if n == b"host"), b"")
        if host_name(raw.decode("latin-1")) in self.hosts:
            await self.app(scope, receive, send)
            return
        await send_problem(
            send, 400, CODE, "Host not allowed", "this server does not answer for that host"
        )
