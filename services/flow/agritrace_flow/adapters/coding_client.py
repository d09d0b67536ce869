"""The flow service's view of the coding service: over gRPC as the service's own account
(microservices), or the coding use cases in the same process (all-in-one), acting as a
service principal so the same access rules apply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from agritrace.coding.v1 import coding_pb2 as cpb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_flow.service_layer.ports import CodeInfo
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.grpc_kit.status import domain_error_from

TIMEOUT_SECONDS = 30.0
_STATES = {number: name.removeprefix("CODE_STATE_")
           for name, number in cpb.CodeState.items() if number}


class GrpcCodeService:
    """CodeService over CodingService; `channel` must add the service's token."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub: Any = coding_pb2_grpc.CodingServiceStub(channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            raise domain_error_from(error, "coding") from None

    def lookup(self, code: str) -> CodeInfo:
        answer = self._call("VerifyCode", cpb.VerifyCodeRequest(code=code))
        return CodeInfo(answer.code or code, answer.exists and answer.check_valid,
                        _STATES.get(answer.state, ""), answer.subject_id,
                        answer.product_batch_id)

    def bind(self, request_id: str, codes: Sequence[str], batch_id: str) -> int:
        answer = self._call("ActivateCodes", cpb.ActivateCodesRequest(
            request_id=request_id, product_batch_id=batch_id, codes=list(codes)))
        return int(answer.activated)

    def derive(self, request_id: str, subject_id: str, parents: Sequence[str], batch_id: str,
               quantity: int, reason: str) -> list[str]:
        answer = self._call("DeriveCodes", cpb.DeriveCodesRequest(
            request_id=request_id, subject_id=subject_id, parent_codes=list(parents),
            product_batch_id=batch_id, quantity=quantity, reason=reason))
        return [code.code for code in answer.codes]


IN_PROCESS_FLOW = Principal(
    account_id="in-process:flow", kind=PrincipalKind.SERVICE, username="svc-flow",
    subject_id="", jurisdiction="", roles=frozenset(), session_id="", audience="")


class InProcessCodeService:
    """CodeService over the coding use cases in the same process (all-in-one)."""

    def __init__(self, coding: Any) -> None:
        self._coding = coding  # agritrace_coding.service_layer.services.CodingService

    def lookup(self, code: str) -> CodeInfo:
        found = self._coding.verify(code, actor=IN_PROCESS_FLOW)
        return CodeInfo(found.code or code, found.exists and found.check_valid,
                        found.state.value if found.state else "", found.subject_id,
                        found.product_batch_id)

    def bind(self, request_id: str, codes: Sequence[str], batch_id: str) -> int:
        result = self._coding.activate(request_id, batch_id, list(codes), None,
                                       actor=IN_PROCESS_FLOW)
        return int(result.moved)

    def derive(self, request_id: str, subject_id: str, parents: Sequence[str], batch_id: str,
               quantity: int, reason: str) -> list[str]:
        result = self._coding.derive(request_id, subject_id, list(parents), batch_id,
                                     quantity, reason, actor=IN_PROCESS_FLOW)
        return [record.code for record in result.codes]
