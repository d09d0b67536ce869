"""The bridge's own configuration: the province names its schema, bad values are named."""

from __future__ import annotations

import pytest

from agritrace_bridge.config import BridgeConfig, load_config

BASE = {"AGRITRACE_BRIDGE_ADAPTER": "rest", "AGRITRACE_BRIDGE_PROVINCE": "37",
        "AGRITRACE_BRIDGE_ADAPTER_BASE_URL": "https://trace37.example.gov.cn"}


def test_the_configuration_names_the_service_and_its_page_size() -> None:
    config = BridgeConfig.from_environment({**BASE, "AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE": "250"})
    assert (config.service, config.province, config.import_page_size) == (
        "province-bridge-37", "37", 250)
    assert config.platform.options == {"base_url": "https://trace37.example.gov.cn"}
    assert BridgeConfig.from_environment(BASE).import_page_size == 1000


@pytest.mark.parametrize("size", ["0", "1001", "ten", "-5"])
def test_a_bad_page_size_is_named(size: str) -> None:
    with pytest.raises(ValueError, match="AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE"):
        BridgeConfig.from_environment({**BASE, "AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE": size})


def test_a_command_with_a_bad_configuration_says_why(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGRITRACE_BRIDGE_ADAPTER", "rest")
    monkeypatch.setenv("AGRITRACE_BRIDGE_PROVINCE", "3")
    assert load_config() is None
    assert "AGRITRACE_BRIDGE_PROVINCE must be the two-digit province code" in \
        capsys.readouterr().err
