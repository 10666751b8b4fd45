"""Rate limits and throttling per user, per address and per route class (DESIGN §13):
GCRA buckets in Redis, a local limiter while Redis is away, 429 with the IETF headers."""

from commdesk_billing.security.ratelimit.middleware import RateLimits
from commdesk_billing.security.ratelimit.routes import RouteClass

__all__ = ["RateLimits", "RouteClass"]
