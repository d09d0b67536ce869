"""Configuration from `AGRITRACE_*` environment variables, validated once at start-up.

The defaults are the embedded all-in-one mode: SQLite files under `var/`, in-process events,
no Redis. Setting a PostgreSQL URL and `AGRITRACE_EVENT_BUS=rabbitmq` gives the microservices
mode; the domain code never knows which.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AGRITRACE_"


class ConfigError(Exception):
    """Bad configuration; the message names every offending variable and says why."""


class Settings(BaseSettings):
    """Every knob of a process. Field names map to `AGRITRACE_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(Path("var"), description="Where embedded data (SQLite, keys) lives.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of PostgreSQL (postgresql+psycopg://...); each service uses "
        "its own schema. Unset: one SQLite file per service under data_dir.",
    )
    event_bus: Literal["inprocess", "rabbitmq"] = "inprocess"
    amqp_uri: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str | None = None
    grpc_address: str = "127.0.0.1:50051"
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables the metrics server.")
    log_format: Literal["text", "json"] | None = Field(
        None, description="Unset: json when events go over RabbitMQ (microservices), else text."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    pii_key: SecretStr | None = Field(
        None,
        description="Base64 of 32 random bytes protecting ID and phone numbers. Unset: a key "
        "file is generated under data_dir (embedded mode only).",
    )
    outbox_poll_seconds: float = Field(0.2, gt=0, le=60)
    grpc_max_workers: int = Field(
        16, ge=1, le=1024,
        description="Server threads. A service whose calls are mostly answered from memory "
        "has a lower default of its own (the query server: 3); setting it wins.")
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=300)
    migrate_on_start: bool = Field(
        False, description="Apply migrations when a server starts (all-in-one always does)."
    )
    sso_address: str | None = Field(
        None,
        description="HOST:PORT of the sso service, whose keys verify every caller's token. "
        "Unset in the all-in-one mode (sso runs in the same process).",
    )
    registry_address: str | None = Field(
        None,
        description="HOST:PORT of the registry service, which services ask about subjects. "
        "Unset in the all-in-one mode (the registry runs in the same process).",
    )
    coding_address: str | None = Field(
        None,
        description="HOST:PORT of the coding service, which services (flow) ask about codes. "
        "Unset in the all-in-one mode.",
    )
    flow_address: str | None = Field(
        None,
        description="HOST:PORT of the flow service, whose event log the query service replays "
        "when it rebuilds its read model. Unset in the all-in-one mode.",
    )
    query_counterfeit_threshold: int = Field(
        5, ge=1, le=10_000,
        description="Scans of unknown or malformed codes from one place within 10 minutes "
        "that raise a counterfeit signal (query service).",
    )
    query_near_cache_entries: int = Field(
        50_000, ge=0, le=10_000_000,
        description="Origin views a query server replica keeps in its own memory in front of "
        "Redis (dropped when Redis announces their invalidation); 0 turns the near cache off. "
        "Only with AGRITRACE_REDIS_URL.",
    )
    resolver_base_url: str = Field(
        "https://trace.agritrace.example.cn",
        description="Base URL of the trace-code resolver printed in every label's QR code "
        "(GS1 Digital Link style: <base>/tc/<code>).",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
    )
    service_username: str = Field(
        "", description="The service account this process signs in to sso with."
    )
    service_password: SecretStr | None = None
    admin_password: SecretStr | None = Field(
        None,
        description="Password of the first administrator, `admin`, created when missing "
        "(all-in-one start, `python -m agritrace_sso bootstrap-admin`).",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql", "sqlite")):
            raise ValueError("must be a postgresql+psycopg:// or sqlite:/// SQLAlchemy URL")
        return value

    @field_validator("amqp_uri")
    @classmethod
    def _amqp(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("grpc_address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:50051 or 0.0.0.0:50051")
        return value

    @field_validator("pii_key")
    @classmethod
    def _pii_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be base64") from None
            if len(raw) != 32:
                raise ValueError("must decode to exactly 32 bytes")
        return value

    @model_validator(mode="after")
    def _shared_infrastructure_needs_keys(self) -> Settings:
        if self.database_url and self.database_url.startswith("postgresql") and not self.pii_key:
            raise ValueError(
                "AGRITRACE_PII_KEY must be set when AGRITRACE_DATABASE_URL is PostgreSQL: "
                "every replica must protect personal data with the same key"
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def effective_log_format(self) -> Literal["text", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.event_bus == "rabbitmq" else "text"

    def with_defaults(self, **defaults: Any) -> Settings:
        """These settings with a service's own defaults for the fields the environment
        left unset."""
        unset = {name: value for name, value in defaults.items()
                 if name not in self.model_fields_set}
        return self.model_copy(update=unset) if unset else self

    def database_for(self, service: str) -> DatabaseTarget:
        """Where a service keeps its data: its own schema, or its own SQLite file."""
        if self.database_url is None:
            path = self.data_dir / f"{service}.db"
            return DatabaseTarget(url=f"sqlite:///{path}", schema=None)
        if self.database_url.startswith("sqlite"):
            return DatabaseTarget(url=self.database_url, schema=None)
        return DatabaseTarget(url=self.database_url, schema=service.replace("-", "_"))

    def pii_key_bytes(self) -> bytes:
        """The personal-data key; in embedded mode generated once into data_dir."""
        if self.pii_key is not None:
            return base64.b64decode(self.pii_key.get_secret_value())
        key_file = self.data_dir / "pii.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
        return base64.b64decode(key_file.read_text().strip())


@dataclass(frozen=True)
class DatabaseTarget:
    url: str
    schema: str | None


def load_settings(**overrides: object) -> Settings:
    """Reads the environment; raises ConfigError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = "_".join(str(part) for part in item["loc"])
            name = f"{ENV_PREFIX}{location.upper()}" if location else "configuration"
            problems.append(f"  {name}: {item['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
