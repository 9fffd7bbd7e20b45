"""The one place where exceptions become gRPC statuses.

Services raise: :class:`RpcError` for what they decide themselves (a bad
field, a denied call), or the named errors of the store, the CA and ``mesh``.
:func:`status_for` turns any of them into ``(code, message)``. An exception
that is none of these is a bug: it is logged with its traceback and answered
INTERNAL with no detail (the log has it).
"""

from __future__ import annotations

import grpc

from mesh.errors import InvalidIdentifier, KeyHistoryError, MeshError, WeakKeyError
from registry.ca.errors import (
    CAKeyStoreError,
    CAStateError,
    CertificateRequestRejected,
    CSRRejected,
    JWTSVIDRequestRejected,
)
from registry.store.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StoreUnavailable,
)

# Longest status message sent back; a hostile value echoed in a message is cut short.
MAX_MESSAGE = 1024


class RpcError(Exception):
    """A decided outcome: this status code with this (actionable) message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, message: str) -> RpcError:
    """INVALID_ARGUMENT naming the request field at fault."""
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


def unauthenticated(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.UNAUTHENTICATED, message)


def denied(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.PERMISSION_DENIED, message)


def not_found(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.FAILED_PRECONDITION, message)


def already_exists(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.ALREADY_EXISTS, message)


def unavailable(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.UNAVAILABLE, message)


# Most specific first: the first matching class decides.
_MAPPING: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (CSRRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (CertificateRequestRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (JWTSVIDRequestRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (CAKeyStoreError, grpc.StatusCode.FAILED_PRECONDITION),
    (CAStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (WeakKeyError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidIdentifier, grpc.StatusCode.INVALID_ARGUMENT),
    (KeyHistoryError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status for a known exception, or None for an unexpected one (a bug)."""
    if isinstance(exc, RpcError):
        return exc.code, _cut(exc.message)
    for kind, code in _MAPPING:
        if isinstance(exc, kind):
            return code, _cut(str(exc))
    if isinstance(exc, MeshError):
        # A named error with an actionable message that no rule above claims: the
        # request could not be served as asked; say so rather than hide it.
        return grpc.StatusCode.FAILED_PRECONDITION, _cut(str(exc))
    return None


def _cut(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE - 3] + "..."
