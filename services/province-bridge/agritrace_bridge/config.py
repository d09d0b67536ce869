"""The bridge's own configuration (AGRITRACE_BRIDGE_*), next to the kernel's Settings. Free of
grpc: the worker process (eventlet) reads it too."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from agritrace_bridge.adapters.loader import config_from_environment
from agritrace_bridge.contract import MAX_PAGE_SIZE
from agritrace_bridge.service_layer.ports import AdapterConfig

ENV_IMPORT_PAGE_SIZE = "AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE"


def service_name(province: str) -> str:
    """The bridge's name as a service: its schema (province_bridge_37) or SQLite file."""
    return f"province-bridge-{province}"


@dataclass(frozen=True)
class BridgeConfig:
    """The bridge's own settings (AGRITRACE_BRIDGE_*), next to the kernel's Settings."""

    adapter: str
    platform: AdapterConfig
    # Subjects per provincial page of the historical import (AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE;
    # one registry call and one checkpoint each).
    import_page_size: int = MAX_PAGE_SIZE

    @property
    def province(self) -> str:
        return self.platform.province

    @property
    def service(self) -> str:
        return service_name(self.province)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BridgeConfig:
        environ = os.environ if environ is None else environ
        name, config = config_from_environment(environ)
        raw = environ.get(ENV_IMPORT_PAGE_SIZE, "").strip() or str(MAX_PAGE_SIZE)
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise ValueError(f"{ENV_IMPORT_PAGE_SIZE} must be a number from 1 to "
                             f"{MAX_PAGE_SIZE}")
        return cls(name, config, int(raw))


def load_config() -> BridgeConfig | None:
    """The configuration of a bridge command, or None after saying on stderr what is wrong
    (a command then exits with 2, like a bad AGRITRACE_* setting)."""
    try:
        return BridgeConfig.from_environment()
    except ValueError as error:
        print(f"invalid configuration:\n  {error}", file=sys.stderr)
        return None
