"""Configuration guards and the Neon-style database URL translation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from commdesk_billing.config import DEV_JWT_SECRET, Environment, Settings
from commdesk_billing.db.urls import DatabaseUrlError, to_asyncpg

STRONG = "x" * 40


def test_neon_pooled_url_is_accepted_as_handed_out() -> None:
    target = to_asyncpg(
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2"
        ".aws.neon.tech/dbname?sslmode=require&channel_binding=require"
    )
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.host == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    assert target.url.password == "AbC123dEf"
    assert target.connect_args["ssl"] == "require"
    # Transaction-mode pooler safety: no statement cache, collision-free statement names.
    assert target.connect_args["statement_cache_size"] == 0
    assert target.url.query["prepared_statement_cache_size"] == "0"
    names = {target.connect_args["prepared_statement_name_func"]() for _ in range(100)}
    assert len(names) == 100


def test_direct_connections_keep_the_statement_cache() -> None:
    direct = to_asyncpg("postgresql://u:p@ep-cool-darkness-123456.us-east-2.aws.neon.tech/db")
    assert "statement_cache_size" not in direct.connect_args
    assert direct.url.query["prepared_statement_cache_size"] == "100"
    forced = to_asyncpg("postgresql://u@127.0.0.1:6432/db", pooled=True)
    assert forced.connect_args["statement_cache_size"] == 0


def test_neon_endpoint_option_becomes_a_startup_parameter() -> None:
    target = to_asyncpg("postgres://u:p@host/db?sslmode=require&options=endpoint%3Dep-abc")
    assert target.connect_args["server_settings"] == {"options": "endpoint=ep-abc"}


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql://u@h/db?sslmode=sometimes",
        "postgresql://u@h/db?foo=1",
        "not a url",
    ],
)
def test_bad_database_urls_are_refused(url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        to_asyncpg(url)


def test_production_needs_the_jwks_and_not_the_development_secret() -> None:
    # HS256 (the shared secret's algorithm) is refused in production: the secret does not
    # matter there, CommDesk's JWKS does.
    with pytest.raises(ValidationError, match="JWT_JWKS_URL must be set"):
        Settings(
            env=Environment.production,
            jwt_secret=DEV_JWT_SECRET,
            database_url="postgresql://u:p@db.example/x?sslmode=require",
            **{**SAFE_CASHFREE, "jwt_jwks_url": None},  # type: ignore[arg-type]
        )
    s = Settings(
        env=Environment.production,
        jwt_secret=DEV_JWT_SECRET,
        database_url="postgresql://u:p@db.example/x?sslmode=require",
        **SAFE_CASHFREE,  # type: ignore[arg-type]
    )
    assert s.jwt_jwks_url == SAFE_CASHFREE["jwt_jwks_url"]


def test_production_refuses_plaintext_remote_database() -> None:
    with pytest.raises(ValidationError, match="sslmode"):
        Settings(
            env=Environment.production,
            jwt_secret=STRONG,
            database_url="postgresql://u:p@db.example/x",
        )


SAFE_CASHFREE = {
    "cashfree_client_secret": "cfsk_ma_prod_" + "s" * 30,
    "cashfree_base_url": "https://api.cashfree.com/pg",
    "public_base_url": "https://billing.example",
    "seller_gstin": "29ABCDE1234F1Z5",
    "jwt_jwks_url": "https://id.commdesk.example/.well-known/jwks.json",
}


def test_production_accepts_a_safe_configuration() -> None:
    s = Settings(
        env=Environment.production,
        jwt_secret=STRONG,
        database_url="postgresql://u:p@db.example/x?sslmode=require",
        **SAFE_CASHFREE,  # type: ignore[arg-type]
    )
    assert s.direct_url == s.database_url


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cashfree_client_secret": "cfsk_ma_test_commdesk_sandbox_secret"}, "CLIENT_SECRET"),
        ({"cashfree_base_url": "http://127.0.0.1:8765/pg"}, "CASHFREE_BASE_URL"),
        ({"cashfree_payout_base_url": "http://127.0.0.1:8765/payout"}, "CASHFREE_PAYOUT_BASE_URL"),
        (
            {"cashfree_verification_base_url": "http://127.0.0.1:8765/verification"},
            "CASHFREE_VERIFICATION_BASE_URL",
        ),
        ({"public_base_url": "http://billing.example"}, "PUBLIC_BASE_URL"),
        ({"redis_url": "redis://default:t@eu1-x.upstash.io:6379"}, "REDIS_URL"),
    ],
)
def test_production_refuses_the_sandbox_and_plain_http(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(
            env=Environment.production,
            jwt_secret=STRONG,
            database_url="postgresql://u:p@db.example/x?sslmode=require",
            **{**SAFE_CASHFREE, **change},  # type: ignore[arg-type]
        )


def test_production_refuses_the_placeholder_gstin() -> None:
    with pytest.raises(ValidationError, match="SELLER_GSTIN"):
        Settings(
            env=Environment.production,
            jwt_secret=STRONG,
            database_url="postgresql://u:p@db.example/x?sslmode=require",
            **{**SAFE_CASHFREE, "seller_gstin": "29AAACC0000A1Z5"},  # type: ignore[arg-type]
        )


def test_document_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="must start with"):
        Settings(seller_gstin="27ABCDE1234F1Z5")  # a Maharashtra GSTIN, our state is 29
    with pytest.raises(ValidationError, match="different number series"):
        Settings(invoice_series="CD", credit_note_series="CD")
    with pytest.raises(ValidationError, match="BUNNY"):
        Settings(storage_backend="bunny")
    with pytest.raises(ValidationError):
        Settings(invoice_series="TOOLONG")  # numbers must fit GST's 16 characters
    ok = Settings(storage_backend="bunny", bunny_storage_zone="z", bunny_access_key="k")
    assert ok.bunny_access_key.get_secret_value() == "k"


def test_bad_network_lists_are_refused() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOWED_IPS"):
        Settings(webhook_allowed_ips=("not-an-ip",))
    with pytest.raises(ValidationError, match="TOPUP"):
        Settings(topup_min_paise=10_000, topup_max_paise=1_000)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DB_POOL_SIZE", "7")
    monkeypatch.setenv("BILLING_DATABASE_DIRECT_URL", "postgresql://u@direct/db")
    s = Settings()
    assert s.db_pool_size == 7
    assert s.direct_url == "postgresql://u@direct/db"


def test_invalid_environment_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DB_POOL_SIZE", "-3")
    with pytest.raises(ValidationError):
        Settings()


def test_an_atlas_url_is_taken_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    atlas = "mongodb+srv://billing:p%40ss@cluster0.ab1cd.mongodb.net/?retryWrites=true&w=majority"
    monkeypatch.setenv("BILLING_MONGODB_URL", atlas)
    s = Settings()
    assert s.mongodb_url.get_secret_value() == atlas
    assert "p%40ss" not in repr(s) and "p%40ss" not in str(s.model_dump())
    assert (s.mongodb_database, s.mongodb_timeout_s, s.community_cache_s) == ("commdesk", 3.0, 30)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BILLING_MONGODB_URL": "postgresql://u:s3cr3t@h/db"}, "must start with mongodb://"),
        ({"BILLING_MONGODB_URL": "mongodb://u:s3cr3t@/db"}, "names no host"),
        ({"BILLING_MONGODB_URL": "mongodb://u:s3cr3t@h /db"}, "one line of visible"),
        ({"BILLING_MONGODB_DATABASE": "com.desk"}, "mongodb_database"),
        ({"BILLING_MONGODB_TIMEOUT_S": "0"}, "mongodb_timeout_s"),
        ({"BILLING_MONGODB_TIMEOUT_S": "31"}, "mongodb_timeout_s"),
        ({"BILLING_COMMUNITY_CACHE_S": "-1"}, "community_cache_s"),
        ({"BILLING_COMMUNITY_CACHE_S": "3601"}, "community_cache_s"),
    ],
)
def test_bad_mongodb_settings_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("BILLING_JWT_SECRET", "s3cr3t-jwt-" + "x" * 32)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message) as refused:
        Settings()
    # A refusal names the variable and the rule, never a value: they hold the secrets.
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("mongodb://billing:pw@db.example.com:27017/commdesk", True),
        ("mongodb://billing:pw@db.example.com:27017/commdesk?tls=false", True),
        ("mongodb://billing:pw@db.example.com:27017/commdesk?authSource=admin&tls=true", False),
        ("mongodb://db1.example.com,db2.example.com/?replicaSet=rs0&ssl=true", False),
        ("mongodb+srv://billing:pw@cluster0.ab1cd.mongodb.net/?retryWrites=true", False),
        ("mongodb://127.0.0.1:27017/", False),
    ],
)
def test_production_refuses_a_plaintext_remote_mongodb(url: str, refused: bool) -> None:
    def make() -> Settings:
        return Settings(
            env=Environment.production,
            jwt_secret=STRONG,
            database_url="postgresql://u:p@db.example/x?sslmode=require",
            mongodb_url=url,  # type: ignore[arg-type]
            **SAFE_CASHFREE,  # type: ignore[arg-type]
        )

    if refused:
        with pytest.raises(ValidationError, match="BILLING_MONGODB_URL must use TLS"):
            make()
    else:
        assert make().mongodb_url.get_secret_value() == url
