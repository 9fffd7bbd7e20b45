"""The one server interceptor: authentication, authorisation, status mapping, metrics.

Every RPC the server serves passes through :class:`GuardInterceptor`:

1. its rule is looked up in :data:`registry.authz.RULES` (unlisted -> refused);
2. for a non-public rule the caller is authenticated (:mod:`registry.auth`) and
   authorised (:func:`registry.authz.authorize`), before any service code runs;
3. the caller is made available to the service as :func:`current_principal`;
4. whatever the service raises becomes a precise status (:mod:`registry.status`);
   an unexpected exception is logged and answered INTERNAL without detail;
5. the call is counted and timed (:mod:`registry.metrics`).

Wrapped handlers are built once per method and reused.
"""

from __future__ import annotations

import contextvars
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from registry.auth import ANONYMOUS, Authenticator, Principal
from registry.authz import Rule, authorize, rule_for, unlisted
from registry.logs import get_logger
from registry.metrics import Metrics
from registry.status import status_for

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "mesh_principal", default=ANONYMOUS
)
_log = get_logger("registry.rpc")


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served (ANONYMOUS for public calls)."""
    return _principal.get()


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator, metrics: Metrics) -> None:
        self._auth = authenticator
        self._metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    # -- the guarded call ----------------------------------------------------

    async def _admit(self, method: str, rule: Rule | None, request: Any, context: Any) -> None:
        if rule is None:
            raise unlisted(method)
        if rule is Rule.PUBLIC:
            _principal.set(ANONYMOUS)
            return
        principal = await self._auth.authenticate(context)
        authorize(rule, principal, request)
        _principal.set(principal)

    @staticmethod
    def _status(method: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
        mapped = status_for(exc)
        if mapped is None:
            incident = uuid.uuid4().hex[:12]
            _log.error("rpc.unexpected_error", method=method, incident=incident, exc_info=exc)
            code, message = grpc.StatusCode.INTERNAL, (
                f"internal error (incident {incident}); the registry log has the details"
            )
        else:
            code, message = mapped
            if code is grpc.StatusCode.UNAVAILABLE:
                _log.warning("rpc.unavailable", method=method, detail=message)
        return code, message

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        rule = rule_for(method)
        observe = self._metrics.observe
        admit, status = self._admit, self._status

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                start = time.perf_counter()
                code = "OK"
                try:
                    await admit(method, rule, request, context)
                    return await inner_uu(request, context)
                except grpc.aio.AbortError:
                    code = _code_name(context)
                    raise
                except Exception as exc:
                    status_code, message = status(method, exc)
                    code = status_code.name
                    await context.abort(status_code, message)
                finally:
                    observe(method, code, time.perf_counter() - start)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                start = time.perf_counter()
                code = "OK"
                try:
                    await admit(method, rule, request, context)
                    result = inner_us(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except grpc.aio.AbortError:
                    code = _code_name(context)
                    raise
                except Exception as exc:
                    status_code, message = status(method, exc)
                    code = status_code.name
                    await context.abort(status_code, message)
                finally:
                    observe(method, code, time.perf_counter() - start)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        # Client-streaming methods: no request to read a target from before the call.
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(request_iterator: Any, context: Any) -> Any:
                try:
                    await admit(method, rule, None, context)
                    return await inner_su(request_iterator, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await context.abort(*status(method, exc))

            return grpc.stream_unary_rpc_method_handler(
                stream_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        inner_ss = handler.stream_stream

        async def stream_stream(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            try:
                await admit(method, rule, None, context)
                result = inner_ss(request_iterator, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):
                    await result
                else:
                    # Synchronous-iterator servicers (grpc's reflection service).
                    for item in result:
                        yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await context.abort(*status(method, exc))

        return grpc.stream_stream_rpc_method_handler(
            stream_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code_name(context: Any) -> str:
    try:
        code = context.code()
    except Exception:  # older runtimes lack code(); the count is still useful
        return "UNKNOWN"
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return str(code)
