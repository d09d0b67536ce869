"""Provincial platform adapters by name, through Python entry points.

An adapter is a callable `(AdapterConfig) -> ProvincialPlatform` declared by any installed
distribution in the entry point group `agritrace.bridge.adapters`:

    [project.entry-points."agritrace.bridge.adapters"]
    sftp = "acme_bridge_sftp:create"

and chosen by name in the bridge's configuration (`AGRITRACE_BRIDGE_ADAPTER=sftp`, options as
`AGRITRACE_BRIDGE_ADAPTER_<OPTION>`), so a province brings its own without a change to the
bridge. The two built-in adapters are declared the same way by the agritrace distribution;
they are also known here as entry points of their own, so the bridge finds them even when it
runs from a source tree that was never installed. Either way every adapter is resolved by the
same code: `EntryPoint.load()`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agritrace_bridge.service_layer.ports import (
    AdapterConfig,
    AdapterFactory,
    ProvincialPlatform,
)

GROUP = "agritrace.bridge.adapters"
ENV_ADAPTER = "AGRITRACE_BRIDGE_ADAPTER"
ENV_PROVINCE = "AGRITRACE_BRIDGE_PROVINCE"
ENV_OPTION_PREFIX = "AGRITRACE_BRIDGE_ADAPTER_"

BUILTIN: tuple[importlib.metadata.EntryPoint, ...] = (
    importlib.metadata.EntryPoint(
        name="rest", group=GROUP,
        value="agritrace_bridge.adapters.rest:RestProvincialPlatform.from_config"),
    importlib.metadata.EntryPoint(
        name="drop-folder", group=GROUP,
        value="agritrace_bridge.adapters.drop_folder:DropFolderProvincialPlatform.from_config"),
)


class AdapterNotFound(LookupError):
    """No adapter has this name."""


class AdapterLoadError(Exception):
    """The adapter is declared but cannot be used (its module does not import, its target is
    missing or not callable, or two distributions declare the name differently)."""


@dataclass(frozen=True)
class AdapterCatalog:
    """The adapters that can be chosen, by name."""

    entry_points: Mapping[str, importlib.metadata.EntryPoint]
    # Names declared with different targets: "target a and target b".
    clashes: Mapping[str, str]

    @classmethod
    def discover(cls) -> AdapterCatalog:
        """The built-in adapters and every one installed distributions declare."""
        return cls.of([*BUILTIN, *importlib.metadata.entry_points(group=GROUP)])

    @classmethod
    def of(cls, entry_points: Iterable[importlib.metadata.EntryPoint]) -> AdapterCatalog:
        """A catalogue of these entry points. A name declared twice must name the same
        target (the built-ins are declared by the package and by its distribution): anything
        else would let whichever loads first decide, so the name is refused."""
        chosen: dict[str, importlib.metadata.EntryPoint] = {}
        clashes: dict[str, str] = {}
        for entry_point in entry_points:
            if entry_point.group != GROUP:
                continue
            held = chosen.setdefault(entry_point.name, entry_point)
            if held.value != entry_point.value:
                clashes[entry_point.name] = f"{held.value} and {entry_point.value}"
        return cls(chosen, clashes)

    @property
    def names(self) -> list[str]:
        return sorted(self.entry_points)

    def factory(self, name: str) -> AdapterFactory:
        """The adapter factory called `name`."""
        entry_point = self.entry_points.get(name)
        if entry_point is None:
            raise AdapterNotFound(f"no provincial platform adapter is called {name!r}; "
                                  f"known: {', '.join(self.names) or 'none'}")
        if name in self.clashes:
            raise AdapterLoadError(f"adapter {name!r} is declared with two targets: "
                                   f"{self.clashes[name]}")
        try:
            loaded = entry_point.load()
        except (ImportError, AttributeError) as error:
            raise AdapterLoadError(f"adapter {name!r} ({entry_point.value}) cannot be "
                                   f"loaded: {error}") from error
        if not callable(loaded):
            raise AdapterLoadError(f"adapter {name!r} ({entry_point.value}) is not callable")
        factory: AdapterFactory = loaded
        return factory

    def open(self, name: str, config: AdapterConfig) -> ProvincialPlatform:
        """The provincial platform through adapter `name`. Raises AdapterLoadError when what
        the factory makes is not a ProvincialPlatform, ValueError for a bad option."""
        platform = self.factory(name)(config)
        if not isinstance(platform, ProvincialPlatform):
            raise AdapterLoadError(f"adapter {name!r} made a {type(platform).__name__}, "
                                   "not a ProvincialPlatform")
        return platform


def config_from_environment(environ: Mapping[str, str]) -> tuple[str, AdapterConfig]:
    """The adapter name and its configuration from AGRITRACE_BRIDGE_ADAPTER,
    AGRITRACE_BRIDGE_PROVINCE and AGRITRACE_BRIDGE_ADAPTER_<OPTION> (lower-cased:
    AGRITRACE_BRIDGE_ADAPTER_BASE_URL is the option base_url)."""
    name = environ.get(ENV_ADAPTER, "").strip()
    province = environ.get(ENV_PROVINCE, "").strip()
    if not name:
        raise ValueError(f"{ENV_ADAPTER} must name the provincial platform adapter")
    if len(province) != 2 or not province.isdigit():
        raise ValueError(f"{ENV_PROVINCE} must be the two-digit province code")
    options = {key.removeprefix(ENV_OPTION_PREFIX).lower(): value
               for key, value in environ.items() if key.startswith(ENV_OPTION_PREFIX)}
    return name, AdapterConfig(province=province, options=options)
