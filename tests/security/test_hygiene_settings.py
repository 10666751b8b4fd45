"""The request-hygiene settings refuse what could not work or would open us up."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from commdesk_billing.config import Environment, Settings
from commdesk_billing.httpserver import GuardedHttpProtocol, server_config


@pytest.mark.parametrize(
    "origin",
    ["*", "null", "https://a.test/", "https://a.test/path", "HTTPS://A.TEST", "a.test", "ftp://a"],
)
def test_cors_origins_must_be_exact_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="BILLING_CORS_ORIGINS"):
        Settings(cors_origins=(origin,))


def test_origins_and_hosts_that_are_accepted() -> None:
    s = Settings(
        cors_origins=("https://console.commdesk.test", "http://127.0.0.1:5173"),
        allowed_hosts=("api.commdesk.test", "10.0.0.7", "::1"),
        public_base_url="https://billing.commdesk.test",
    )
    assert s.served_hosts == {
        "api.commdesk.test",
        "10.0.0.7",
        "::1",
        "billing.commdesk.test",
        "localhost",
        "127.0.0.1",
    }
    assert s.docs_served and Settings(api_docs=False).docs_served is False


@pytest.mark.parametrize("host", ["Bad Host", "a_b.test", "*.commdesk.test", "-a.test", ""])
def test_allowed_hosts_are_names(host: str) -> None:
    with pytest.raises(ValidationError):
        Settings(allowed_hosts=(host,))


def _production(**extra: object) -> Settings:
    return Settings(
        env=Environment.production,
        jwt_secret=SecretStr("j" * 40),
        database_url="postgresql://u:p@db.internal/x?sslmode=require",
        seller_gstin="29ABCDE1234F1Z5",
        cashfree_client_secret=SecretStr("cfsk_live_secret"),
        cashfree_base_url="https://api.cashfree.com/pg",
        public_base_url="https://billing.commdesk.in",
        jwt_jwks_url="https://commdesk.in/.well-known/jwks.json",
        **extra,  # type: ignore[arg-type]
    )


def test_production_defaults_close_docs_and_loopback_hosts() -> None:
    s = _production()
    assert not s.docs_served and s.served_hosts == {"billing.commdesk.in"}
    assert _production(api_docs=True).docs_served


@pytest.mark.parametrize("name", ["metrics_token", "csrf_secret"])
def test_production_refuses_short_secrets(name: str) -> None:
    with pytest.raises(ValidationError, match=f"BILLING_{name.upper()}"):
        _production(**{name: SecretStr("short")})
    _production(**{name: SecretStr("k" * 32)})


def test_production_refuses_plain_http_origins() -> None:
    with pytest.raises(ValidationError, match="https origins in production"):
        _production(cors_origins=("http://console.commdesk.in",))


def test_the_server_configuration() -> None:
    config = server_config("x:y", Settings(http_header_timeout_s=3.5, http_keep_alive_s=75))
    assert config.http is GuardedHttpProtocol and config.header_timeout_s == 3.5
    assert config.timeout_keep_alive == 75
    assert (config.server_header, config.date_header, config.proxy_headers) == (False, True, False)
