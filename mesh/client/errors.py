"""Errors a registry call can end in, each with what to do about it.

gRPC status codes are mapped once, here, to :class:`MeshError` subclasses, so
callers catch meaning (the registry is down, the token is spent, the agent is
revoked) rather than transport details.
"""

from __future__ import annotations

import grpc

from mesh.errors import MeshError


class RegistryError(MeshError):
    """The registry answered a call with an error (or could not be reached)."""

    code: str = "UNKNOWN"


class RegistryUnavailable(RegistryError):
    """No registry answered at any of the given addresses (after retries)."""

    code = "UNAVAILABLE"


class RegistryTimeout(RegistryError):
    """The registry did not answer before the call's deadline."""

    code = "DEADLINE_EXCEEDED"


class InvalidRequest(RegistryError):
    """The registry rejected a value in the request (INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class Unauthenticated(RegistryError):
    """The registry did not accept the caller's credential (token, key proof or SVID)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(RegistryError):
    """The caller is authenticated but may not do this."""

    code = "PERMISSION_DENIED"


class NotFound(RegistryError):
    code = "NOT_FOUND"


class AlreadyExists(RegistryError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(RegistryError):
    """The request is well formed but the state forbids it (e.g. the agent is revoked)."""

    code = "FAILED_PRECONDITION"


class CredentialError(MeshError):
    """A local credential file (bundle, SVID, operator credential) is missing or unusable."""


class ResponseError(MeshError):
    """The registry's answer failed validation (wrong DID, SVID not chaining to the bundle...)."""


_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAUTHENTICATED: (
        "check the credential: a join token is single-use and expires, an SVID must be "
        "current (re-register with `mesh register` without --token), the operator "
        "credential must come from this registry's data dir"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "this call needs another identity (operator commands need the operator credential "
        "in --data-dir)"
    ),
    grpc.StatusCode.NOT_FOUND: "check the identifier (`mesh agent list`, `mesh token list`)",
    grpc.StatusCode.INVALID_ARGUMENT: "fix the value named above and try again",
    grpc.StatusCode.FAILED_PRECONDITION: "the current state forbids this; see the message",
    grpc.StatusCode.ALREADY_EXISTS: "it is already there; nothing to do",
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "the registry is slow or overloaded; retry, or raise --timeout"
    ),
}

_CLASSES: dict[grpc.StatusCode, type[RegistryError]] = {
    grpc.StatusCode.UNAVAILABLE: RegistryUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: RegistryTimeout,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
}


def unavailable(
    addresses: list[str] | tuple[str, ...], detail: str, *, mutual: bool = False
) -> RegistryUnavailable:
    where = ", ".join(addresses)
    if mutual:
        return RegistryUnavailable(
            f"cannot reach the registry's mutual-TLS address {where}: {detail}",
            hint=(
                "is the registry running? start it with `mesh serve`; its mTLS port is the "
                "--registry port + 1 unless it was started with another mtls_listen (then pass "
                "--registry-mtls HOST:PORT)"
            ),
        )
    return RegistryUnavailable(
        f"cannot reach the registry at {where}: {detail}",
        hint=(
            f"is the registry running at {where}? start it with `mesh serve`; "
            "check --registry and that --bundle / the data dir's bundle.pem belong to it"
        ),
    )


def from_rpc_error(exc: grpc.RpcError, addresses: list[str] | tuple[str, ...]) -> RegistryError:
    """The :class:`RegistryError` for a failed call (``exc`` must be a grpc.Call too)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return unavailable(addresses, details)
    cls = _CLASSES.get(code, RegistryError)
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    error = cls(f"registry refused the call ({name}): {details}", hint=_HINTS.get(code))
    error.code = name
    return error
