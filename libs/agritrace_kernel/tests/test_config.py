"""Settings from AGRITRACE_* variables: embedded defaults, one database per service, and
start-up errors that name the offending variable."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from agritrace_kernel.config import ConfigError, DatabaseTarget, load_settings

PG_URL = "postgresql+psycopg://agritrace:secret@db.internal:5432/agritrace"
PII_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AGRITRACE_* variable of the machine running the tests leaks in; relative paths
    land in tmp_path."""
    for name in list(os.environ):
        if name.startswith("AGRITRACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings()

    assert settings.embedded is True
    assert settings.database_url is None
    assert settings.data_dir == Path("var")
    assert settings.event_bus == "inprocess"
    assert settings.redis_url is None
    assert settings.grpc_address == "127.0.0.1:50051"
    assert settings.metrics_port == 9464
    assert settings.pii_key is None
    assert settings.migrate_on_start is False


def test_embedded_mode_gives_each_service_its_own_sqlite_file(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")

    assert settings.database_for("registry") == DatabaseTarget(
        url=f"sqlite:///{tmp_path / 'data' / 'registry.db'}", schema=None
    )
    assert settings.database_for("trace-code").url.endswith("/data/trace-code.db")
    assert settings.database_for("registry") != settings.database_for("trace-code")


def test_a_sqlite_url_is_used_as_given() -> None:
    settings = load_settings(database_url="sqlite:////srv/agritrace/all.db")
    assert settings.embedded is False
    assert settings.database_for("registry") == DatabaseTarget("sqlite:////srv/agritrace/all.db",
                                                               None)


def test_postgresql_gives_each_service_its_own_schema() -> None:
    settings = load_settings(database_url=PG_URL, pii_key=PII_KEY)

    assert settings.embedded is False
    assert settings.database_for("registry") == DatabaseTarget(url=PG_URL, schema="registry")
    assert settings.database_for("trace-code") == DatabaseTarget(url=PG_URL, schema="trace_code")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGRITRACE_DATABASE_URL", PG_URL)
    monkeypatch.setenv("AGRITRACE_PII_KEY", PII_KEY)
    monkeypatch.setenv("AGRITRACE_EVENT_BUS", "rabbitmq")
    monkeypatch.setenv("AGRITRACE_AMQP_URI", "amqps://user:pw@mq.internal:5671/agritrace")
    monkeypatch.setenv("AGRITRACE_REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("AGRITRACE_GRPC_ADDRESS", "0.0.0.0:6000")
    monkeypatch.setenv("AGRITRACE_METRICS_PORT", "0")
    monkeypatch.setenv("AGRITRACE_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("AGRITRACE_MIGRATE_ON_START", "true")
    monkeypatch.setenv("AGRITRACE_OUTBOX_POLL_SECONDS", "1.5")

    settings = load_settings()

    assert settings.database_url == PG_URL
    assert settings.event_bus == "rabbitmq"
    assert settings.amqp_uri == "amqps://user:pw@mq.internal:5671/agritrace"
    assert settings.redis_url == "redis://cache.internal:6379/0"
    assert settings.grpc_address == "0.0.0.0:6000"
    assert settings.metrics_port == 0
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.migrate_on_start is True
    assert settings.outbox_poll_seconds == 1.5
    assert settings.pii_key_bytes() == bytes(range(32))


def test_the_pii_key_is_never_shown() -> None:
    settings = load_settings(pii_key=PII_KEY)
    assert PII_KEY not in repr(settings)
    assert PII_KEY not in str(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGRITRACE_DATABASE_URL", "mysql://root@localhost/agritrace"),
        ("AGRITRACE_DATABASE_URL", "not a url"),
        ("AGRITRACE_GRPC_ADDRESS", "localhost"),
        ("AGRITRACE_GRPC_ADDRESS", ":50051"),
        ("AGRITRACE_GRPC_ADDRESS", "127.0.0.1:99999"),
        ("AGRITRACE_GRPC_ADDRESS", "127.0.0.1:http"),
        ("AGRITRACE_PII_KEY", "not base64!"),
        ("AGRITRACE_PII_KEY", base64.b64encode(b"sixteen bytes!!!").decode()),
        ("AGRITRACE_AMQP_URI", "http://rabbit:5672/"),
        ("AGRITRACE_REDIS_URL", "cache.internal:6379"),
        ("AGRITRACE_EVENT_BUS", "kafka"),
        ("AGRITRACE_METRICS_PORT", "70000"),
        ("AGRITRACE_LOG_LEVEL", "VERBOSE"),
        ("AGRITRACE_OUTBOX_POLL_SECONDS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as error:
        load_settings()

    assert f"  {variable}: " in str(error.value)


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGRITRACE_GRPC_ADDRESS", "nowhere")
    monkeypatch.setenv("AGRITRACE_METRICS_PORT", "-1")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "AGRITRACE_GRPC_ADDRESS" in message
    assert "AGRITRACE_METRICS_PORT" in message


def test_postgresql_without_a_pii_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGRITRACE_DATABASE_URL", PG_URL)

    with pytest.raises(ConfigError) as error:
        load_settings()

    assert "AGRITRACE_PII_KEY" in str(error.value)
    assert "AGRITRACE_DATABASE_URL" in str(error.value)
    assert "secret" not in str(error.value)  # the URL's password is not repeated


def test_the_pii_key_value_is_not_repeated_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    short_key = base64.b64encode(b"a short but secret key").decode()
    monkeypatch.setenv("AGRITRACE_PII_KEY", short_key)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "AGRITRACE_PII_KEY" in str(error.value)
    assert short_key not in str(error.value)


def test_embedded_mode_generates_one_private_pii_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")

    key = settings.pii_key_bytes()

    key_file = tmp_path / "data" / "pii.key"
    assert len(key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings.pii_key_bytes() == key
    assert load_settings(data_dir=tmp_path / "data").pii_key_bytes() == key
    assert load_settings(data_dir=tmp_path / "other").pii_key_bytes() != key


def test_a_service_default_applies_only_where_the_environment_is_silent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGRITRACE_GRPC_MAX_WORKERS", raising=False)
    assert load_settings().with_defaults(grpc_max_workers=4).grpc_max_workers == 4
    monkeypatch.setenv("AGRITRACE_GRPC_MAX_WORKERS", "24")
    assert load_settings().with_defaults(grpc_max_workers=4).grpc_max_workers == 24
