"""Sign-in attempts, rate limited per account and per client address (the API's limiter,
`security/ratelimit`: Redis shared by every process, this process's memory while Redis is
away). Every attempt is charged, before the password is checked: a guesser gets
`console_sign_in_per_account` tries an account per window whatever it guesses."""

from __future__ import annotations

import hashlib

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.security.ratelimit.gcra import Bucket, Decision, Policy
from commdesk_billing.security.ratelimit.limiter import Limiter
from commdesk_billing.security.ratelimit.middleware import address_key


class SignInThrottle:
    def __init__(self, settings: Settings) -> None:
        window = settings.console_sign_in_window_s
        self.account = Policy(
            "console-sign-in",
            settings.console_sign_in_per_account,
            window,
            settings.console_sign_in_per_account,
        )
        self.address = Policy(
            "console-sign-in-ip",
            settings.console_sign_in_per_ip,
            window,
            settings.console_sign_in_per_ip,
        )
        self.limiter = Limiter(settings.rate_limit_local_max_keys)

    async def attempt(self, store: RedisStore | None, email: str, ip: str | None) -> Decision:
        # The email hashed: Redis keys are no place for the staff list.
        who = hashlib.sha256(email.encode()).hexdigest()[:32]
        buckets = [
            Bucket(self.account, f"console:sign-in:a:{who}"),
            Bucket(self.address, f"console:sign-in:ip:{address_key(ip)}"),
        ]
        return await self.limiter.acquire(store, buckets)
