"""Reading the rich error details (google.rpc BadRequest, ErrorInfo) of a failed call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def violations(error: grpc.RpcError) -> dict[str, str]:
    """field -> description of the call's BadRequest detail."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found |= {v.field: v.description for v in bad_request.field_violations}
    return found


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of the call's status, or ""."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""
