"""Adapters chosen by name through entry points of the group agritrace.bridge.adapters.

The built-in adapters are resolved by the same code path as any installed one
(`EntryPoint.load()`); the installed distribution's declarations come from pyproject.toml."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from agritrace_bridge.adapters.drop_folder import DropFolderProvincialPlatform
from agritrace_bridge.adapters.loader import (
    BUILTIN,
    GROUP,
    AdapterCatalog,
    AdapterLoadError,
    AdapterNotFound,
    config_from_environment,
)
from agritrace_bridge.adapters.rest import RestProvincialPlatform
from agritrace_bridge.service_layer.ports import AdapterConfig
from agritrace_bridge.simulator import SimulatorServer


def entry(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, group=GROUP, value=value)


def test_the_built_in_adapters_are_found_by_name(tmp_path: Path) -> None:
    catalog = AdapterCatalog.discover()
    assert {"rest", "drop-folder"} <= set(catalog.names)
    folder = catalog.open("drop-folder", AdapterConfig("37", {"root": str(tmp_path)}))
    assert isinstance(folder, DropFolderProvincialPlatform)
    assert folder.health().province == "37" and (tmp_path / "inbox").is_dir()


def test_the_rest_adapter_from_configuration_talks_to_a_platform(
        simulator: SimulatorServer) -> None:
    name, config = config_from_environment({
        "AGRITRACE_BRIDGE_ADAPTER": "rest", "AGRITRACE_BRIDGE_PROVINCE": "37",
        "AGRITRACE_BRIDGE_ADAPTER_BASE_URL": simulator.url,
        "AGRITRACE_BRIDGE_ADAPTER_API_KEY": "test-bridge-key-37",
        "AGRITRACE_BRIDGE_ADAPTER_TIMEOUT_SECONDS": "2.5", "UNRELATED": "x"})
    assert config.options == {"base_url": simulator.url, "api_key": "test-bridge-key-37",
                              "timeout_seconds": "2.5"}
    platform = AdapterCatalog.discover().open(name, config)
    assert isinstance(platform, RestProvincialPlatform)
    assert platform.list_subjects(page_size=3).total_size == 50
    platform.close()


@pytest.mark.parametrize(("environment", "message"), [
    ({"AGRITRACE_BRIDGE_PROVINCE": "37"}, "AGRITRACE_BRIDGE_ADAPTER"),
    ({"AGRITRACE_BRIDGE_ADAPTER": "rest", "AGRITRACE_BRIDGE_PROVINCE": "3"},
     "AGRITRACE_BRIDGE_PROVINCE"),
])
def test_configuration_names_what_is_missing(environment: dict[str, str], message: str
                                             ) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_environment(environment)


def test_an_adapter_option_that_is_missing_or_wrong_is_named() -> None:
    catalog = AdapterCatalog.discover()
    with pytest.raises(ValueError, match="'api_key'"):
        catalog.open("rest", AdapterConfig("37", {"base_url": "http://127.0.0.1:1"}))
    with pytest.raises(ValueError, match="'timeout_seconds'"):
        catalog.open("rest", AdapterConfig("37", {"base_url": "http://127.0.0.1:1",
                                                  "api_key": "k", "timeout_seconds": "-1"}))
    with pytest.raises(ValueError, match="'root'"):
        catalog.open("drop-folder", AdapterConfig("37"))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(AdapterNotFound, match="known: drop-folder, rest"):
        AdapterCatalog.of(BUILTIN).factory("sftp")


def test_a_declared_adapter_that_cannot_be_used_is_named() -> None:
    catalog = AdapterCatalog.of([
        *BUILTIN,
        entry("gone", "agritrace_bridge.adapters.no_such_module:create"),
        entry("typo", "agritrace_bridge.adapters.rest:NoSuchFactory"),
        entry("constant", "agritrace_bridge.contract:CONTRACT_VERSION"),
        entry("wrong-product", "builtins:repr"),  # callable, but makes a string
    ])
    for name in ("gone", "typo", "constant"):
        with pytest.raises(AdapterLoadError, match=repr(name)):
            catalog.factory(name)
    with pytest.raises(AdapterLoadError, match="not a ProvincialPlatform"):
        catalog.open("wrong-product", AdapterConfig("37"))


def test_a_name_declared_twice_must_name_the_same_adapter(tmp_path: Path) -> None:
    same = AdapterCatalog.of([*BUILTIN, *BUILTIN])
    assert same.open("drop-folder", AdapterConfig("37", {"root": str(tmp_path)}))
    hijacked = AdapterCatalog.of([*BUILTIN, entry("rest", "builtins:repr")])
    with pytest.raises(AdapterLoadError, match="two targets"):
        hijacked.factory("rest")
    assert hijacked.factory("drop-folder") is not None


def test_entry_points_of_other_groups_are_ignored() -> None:
    other = importlib.metadata.EntryPoint(name="rest", group="console_scripts",
                                          value="builtins:repr")
    assert AdapterCatalog.of([*BUILTIN, other]).clashes == {}
