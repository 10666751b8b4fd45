"""Who may read /metrics: Prometheus, with BILLING_METRICS_TOKEN as its bearer token.

The metrics name every route, status and queue with their volumes: useful to an attacker
sizing us up, and about 360 KB to produce on each request. With a token set, only a
request bearing it is answered (401 otherwise); with none, /metrics is open outside
production (a developer's machine, the tests) and not served at all in production (404).
"""

from __future__ import annotations

import hmac

from commdesk_billing.config import Environment, Settings


def scrape_refusal(settings: Settings, authorization: str | None) -> int | None:
    """The status to refuse a scrape with (401 or 404), or None to serve it."""
    token = settings.metrics_token
    if token is None:
        return 404 if settings.env is Environment.production else None
    scheme, _, credentials = (authorization or "").partition(" ")
    given = credentials.strip().encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given, token.get_secret_value().encode()
    ):
        return 401
    return None
