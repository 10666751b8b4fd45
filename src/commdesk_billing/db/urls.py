"""Turn a libpq-style PostgreSQL URL (as Neon hands them out) into SQLAlchemy + asyncpg terms.

asyncpg does not read libpq query parameters such as `sslmode` or `channel_binding`; passing
them through would fail at connect time, and silently dropping `sslmode=require` would send
money over plaintext. So each known parameter is translated and anything else is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url

_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


class DatabaseUrlError(ValueError):
    pass


@dataclass(frozen=True)
class AsyncpgTarget:
    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)
    # Through a transaction-mode pooler: nothing prepared is reused.
    pooled: bool = False


def _unique_statement_name() -> str:
    # Behind PgBouncer in transaction mode, consecutive transactions may land on different
    # server connections; statement names must never collide across clients.
    return f"__cdb_{uuid.uuid4().hex}__"


def behind_pooler(raw: str) -> bool:
    """Neon's pooled endpoints carry `-pooler` in the host name."""
    return "-pooler" in (make_url(raw).host or "")


def to_asyncpg(
    raw: str, *, command_timeout_s: float | None = None, pooled: bool | None = None
) -> AsyncpgTarget:
    """`pooled`: the URL leads to a transaction-mode pooler (None: guess from the host)."""
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise DatabaseUrlError("database URL is not a valid URL") from exc
    if url.drivername not in _SCHEMES:
        raise DatabaseUrlError(f"unsupported database URL scheme {url.drivername!r}")
    query = dict(url.query)
    if pooled is None:
        pooled = behind_pooler(raw)
    connect_args: dict[str, Any] = {}
    cache_size = "100"
    if pooled:
        # Behind a transaction-mode pooler no server-side prepared statement may be reused
        # across transactions: consecutive transactions can land on different server
        # connections. Costs a Parse round trip per statement; a direct connection keeps
        # asyncpg's per-connection statement cache.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
        cache_size = "0"
    if command_timeout_s is not None:
        connect_args["command_timeout"] = command_timeout_s
    server_settings: dict[str, str] = {}
    sslmode = query.pop("sslmode", None)
    if sslmode is not None:
        if not isinstance(sslmode, str) or sslmode not in _SSL_MODES:
            raise DatabaseUrlError(f"unsupported sslmode {sslmode!r}")
        # asyncpg accepts the libpq mode names as its `ssl` argument.
        connect_args["ssl"] = sslmode
    query.pop("channel_binding", None)  # asyncpg negotiates SCRAM channel binding itself
    options = query.pop("options", None)
    if isinstance(options, str):
        # Neon's SNI-less fallback: `options=endpoint=<id>` is a startup parameter.
        server_settings["options"] = options
    app_name = query.pop("application_name", None)
    if isinstance(app_name, str):
        server_settings["application_name"] = app_name
    if query:
        raise DatabaseUrlError(f"unsupported database URL parameters: {sorted(query)}")
    if server_settings:
        connect_args["server_settings"] = server_settings
    target = url.set(
        drivername="postgresql+asyncpg", query={"prepared_statement_cache_size": cache_size}
    )
    return AsyncpgTarget(url=target, connect_args=connect_args, pooled=pooled)


def libpq_url(raw: str) -> str:
    """The same URL in plain libpq form (for psql / pgbench / createdb)."""
    url = make_url(raw)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
