"""GetStatus: what a provincial ops team and national ops watch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agritrace_bridge.domain.imports import ImportRun
from agritrace_bridge.domain.status import DirectionStatus
from agritrace_bridge.service_layer.access import check_acts_for
from agritrace_bridge.service_layer.observe import Direction
from agritrace_bridge.service_layer.onboarding import Onboarding
from agritrace_bridge.service_layer.unit_of_work import BridgeUnitOfWork
from agritrace_kernel.auth.principal import Principal


@dataclass(frozen=True)
class BridgeStatus:
    province: str
    adapter: str
    onboarding_stage: str
    inbound: DirectionStatus
    outbound: DirectionStatus
    latest_import: ImportRun | None


class StatusQuery:
    def __init__(self, province: str, adapter: str,
                 uow_factory: Callable[[], BridgeUnitOfWork], onboarding: Onboarding, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._province = province
        self._adapter = adapter
        self._uow = uow_factory
        self._onboarding = onboarding
        self._clock = clock

    def directions(self) -> tuple[DirectionStatus, DirectionStatus]:
        """(inbound, outbound) as stored now."""
        now = self._clock()
        with self._uow() as uow:
            return (uow.sync.status(Direction.INBOUND, now),
                    uow.sync.status(Direction.OUTBOUND, now))

    def get(self, actor: Principal | None) -> BridgeStatus:
        check_acts_for(actor, self._province)
        inbound, outbound = self.directions()
        with self._uow() as uow:
            latest = uow.imports.latest()
        return BridgeStatus(self._province, self._adapter, self._onboarding.stage(),
                            inbound, outbound, latest)
