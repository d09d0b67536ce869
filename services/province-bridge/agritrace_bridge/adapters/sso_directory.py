"""sso's platform directory over gRPC: the public listing (anonymous), and the token
exchange and stage change made with the caller's own credentials."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_bridge.adapters.national import national_error
from agritrace_bridge.service_layer.onboarding import PlatformEntry
from agritrace_kernel.auth.sso_client import bearer_metadata

TIMEOUT_SECONDS = 10.0
_STAGE_PREFIX = "ONBOARDING_STAGE_"


def _entry(platform: Any) -> PlatformEntry:
    return PlatformEntry(platform.platform_id, platform.province,
                         sso_pb2.OnboardingStage.Name(platform.stage).removeprefix(_STAGE_PREFIX))


class GrpcPlatformDirectory:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub: Any = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any, credentials: str = "") -> Any:
        metadata = bearer_metadata(credentials) if credentials else None
        try:
            return getattr(self._stub, method)(request, timeout=TIMEOUT_SECONDS,
                                               metadata=metadata)
        except grpc.RpcError as error:
            raise national_error(error, "sso") from None

    def find(self, province: str) -> PlatformEntry | None:
        token = ""
        while True:
            page = self._call("ListPlatforms", sso_pb2.ListPlatformsRequest(
                page_size=100, page_token=token))
            for platform in page.platforms:
                if platform.province == province:
                    return _entry(platform)
            token = page.next_page_token
            if not token:
                return None

    def exchange_token(self, platform_id: str, credentials: str) -> str:
        answer = self._call("ExchangeToken",
                            sso_pb2.ExchangeTokenRequest(platform_id=platform_id), credentials)
        return str(answer.tokens.access_token)

    def connect(self, platform_id: str, credentials: str) -> PlatformEntry:
        answer = self._call("UpdatePlatform", sso_pb2.UpdatePlatformRequest(
            platform=sso_pb2.Platform(platform_id=platform_id,
                                      stage=sso_pb2.ONBOARDING_STAGE_CONNECTED),
            update_mask=field_mask_pb2.FieldMask(paths=["stage"])), credentials)
        return _entry(answer.platform)
