"""Domain errors -> canonical gRPC status codes with google.rpc.Status details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agritrace_kernel import errors

ERROR_DOMAIN = "agritrace"

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ConcurrencyConflict, grpc.StatusCode.ABORTED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_code_for(error: errors.DomainError) -> grpc.StatusCode:
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def rich_status(error: errors.DomainError) -> grpc.Status:
    """The status a client sees: code, message, ErrorInfo, and BadRequest for bad input."""
    code = status_code_for(error)
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
            )
        )
    ]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def internal_status(trace_id: str) -> grpc.Status:
    """What a client sees for a bug: no internals, but a trace id to quote to operators."""
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (trace id {trace_id or 'unknown'})",
        details=[
            _packed(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
        ],
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNKNOWN,
                        grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAUTHENTICATED})


def domain_error_from(error: grpc.RpcError, service: str) -> errors.DomainError:
    """The domain error a failed call to another AgriTrace service stands for, so a use case
    can pass the other service's verdict on (field violations, reason) as its own. Transport
    trouble, and a refusal of this service's own credentials, become Unavailable."""
    code: grpc.StatusCode = error.code()
    message = f"{service}: {error.details()}"
    status = rpc_status.from_call(error)
    reason, violations = "", []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [errors.FieldViolation(v.field, v.description)
                          for v in bad.field_violations]
    if code in _RETRYABLE:
        return errors.Unavailable(message)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(violations or errors.FieldViolation("", message),
                                      reason=reason or None)
    for error_type, mapped in _CODES:
        if mapped is code:
            return error_type(message, reason=reason or None)
    return errors.FailedPrecondition(message, reason=reason or None)
