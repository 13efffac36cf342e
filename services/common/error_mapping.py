"""The one place where AgoraError kinds become gRPC status codes.

Handlers raise; they never call `context.abort` themselves. An AgoraError's message is meant for
the caller and goes out as the status details. Anything else is a bug: the caller gets INTERNAL
with a short id and the traceback is logged under that id, so internals never leak to clients.
A request whose bytes do not parse is INVALID_ARGUMENT (grpc itself would answer UNKNOWN).
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from services.common import errors

log = logging.getLogger(__name__)

# Kinds only: specific errors inherit their kind's code through the MRO walk.
_CODES: dict[type[errors.AgoraError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Aborted: grpc.StatusCode.ABORTED,
}

HANDLER_FIELDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


# The store being unreachable is a transient outage, not a bug; OSError alone is too broad to map.
_STORE_DOWN = tuple(t for t in errors.REDIS_UNREACHABLE if t is not OSError)
STORE_DOWN_MESSAGE = "the state store is unreachable right now; retry shortly"


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The code for `exc`: its nearest mapped kind, UNAVAILABLE for an unreachable store, else
    INTERNAL (a bare AgoraError included)."""
    if isinstance(exc, _STORE_DOWN):
        return grpc.StatusCode.UNAVAILABLE
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def new_error_id() -> str:
    return uuid.uuid4().hex[:8]


async def _abort_for(exc: Exception, context: aio.ServicerContext, method: str) -> None:
    code = status_code_for(exc)
    if isinstance(exc, _STORE_DOWN):   # its own text names hosts and sockets, not what to do
        log.warning("%s: state store unreachable (%s)", method, type(exc).__name__)
        details = STORE_DOWN_MESSAGE
    elif code is grpc.StatusCode.INTERNAL:
        error_id = new_error_id()
        log.error("internal error, id=%s in %s", error_id, method, exc_info=exc)
        details = f"internal error, id={error_id}"
    else:
        details = str(exc)
    await context.abort(code, details)  # raises AbortError


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """Stands in for a request message whose bytes did not parse.

    If a deserializer raises, grpc.aio answers UNKNOWN with the parser's exception text before any
    interceptor sees the call; so the deserializer returns this instead, and the wrapped handler
    raises InvalidRequest for it, inside the mapping.
    """

    error: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError (corrupt wire format, bad UTF-8), or a custom parser's own
            return _Undecodable(str(exc))

    return deserialize


def _parsed(request: Any, method: str) -> Any:
    if isinstance(request, _Undecodable):
        raise errors.InvalidRequest(f"{method}: the request is not a valid message ({request.error})")
    return request


async def _parsed_stream(requests: AsyncIterable[Any], method: str) -> AsyncIterator[Any]:
    async for request in requests:
        yield _parsed(request, method)


def _map_errors(fn: Callable[..., Any], method: str, request_streaming: bool = False) -> Callable[..., Any]:
    # AbortError is how an already-chosen status propagates in grpc.aio; CancelledError is a
    # BaseException, so `except Exception` leaves it alone. A request that did not parse raises
    # inside the try, so it is mapped like any other InvalidRequest.
    def parsed(request: Any) -> Any:
        return _parsed_stream(request, method) if request_streaming else _parsed(request, method)

    if inspect.isasyncgenfunction(fn):

        async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in fn(parsed(request), context):
                    yield response
            except aio.AbortError:
                raise
            except Exception as exc:
                await _abort_for(exc, context, method)

        return stream

    if inspect.iscoroutinefunction(fn):

        async def call(request: Any, context: aio.ServicerContext) -> Any:
            try:
                return await fn(parsed(request), context)
            except aio.AbortError:
                raise
            except Exception as exc:
                await _abort_for(exc, context, method)

        return call

    # A sync handler runs in grpc's executor with sync request iterators; wrapping it in an
    # async function would change what it receives. Agora serves none.
    return fn


def _is_async(handler: grpc.RpcMethodHandler) -> bool:
    fn = next((getattr(handler, name) for name in HANDLER_FIELDS if getattr(handler, name) is not None), None)
    return inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn)


class ErrorMappingInterceptor(aio.ServerInterceptor):
    """Turns exceptions escaping any handler (all four RPC shapes) into a status. Each method's
    wrapped handler is built once (registered handlers are the same object on every call)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not _is_async(handler):
            return handler
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        method, streaming = handler_call_details.method, handler.request_streaming
        wrapped = wrap_handler(handler, lambda fn: _map_errors(fn, method, streaming))
        # Only a wrapped (async) behaviour knows to refuse the stand-in for an unparsable request.
        wrapped = wrapped._replace(request_deserializer=_lenient(handler.request_deserializer))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def wrap_handler(
    handler: grpc.RpcMethodHandler | None, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Any:
    """`handler` with its one behaviour replaced by `wrap(behaviour)`; None (unknown method) stays None."""
    if handler is None:
        return None
    for name in HANDLER_FIELDS:
        fn = getattr(handler, name)
        if fn is not None:
            # grpc's RpcMethodHandler is a namedtuple; _replace keeps the (de)serializers.
            return handler._replace(**{name: wrap(fn)})  # type: ignore[attr-defined]
    return handler
