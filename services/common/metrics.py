"""gRPC server metrics under the go-grpc-prometheus names, build info, and the /metrics endpoint.

The metric objects live in the default registry and are created once at import, so any number of
servers in one process (tests) share them instead of failing on duplicate registration.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc import aio
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common.error_mapping import wrap_handler

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code")
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from RPC start to its last response.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MSG_RECEIVED = Counter("grpc_server_msg_received_total", "Request messages received.", _LABELS)
MSG_SENT = Counter("grpc_server_msg_sent_total", "Response messages sent.", _LABELS)
BUILD_INFO = Gauge("agora_build_info", "Always 1; labels identify the running build.", ("service", "version"))

# Go's codes.Code.String() spellings, which dashboards built for go-grpc-prometheus filter on.
CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

_RPC_TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}


def set_build_info(service: str, version: str) -> None:
    BUILD_INFO.labels(service=service, version=version).set(1)


def _final_code(context: aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    if exc is None or isinstance(exc, aio.AbortError):
        # Whatever abort()/set_code() chose (the error interceptor aborts); None means nobody did.
        code = context.code()
        if code is None:
            return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN
        return code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    # What grpc.aio sends for an exception nobody mapped.
    return grpc.StatusCode.UNKNOWN


@dataclass
class _Rpc:
    """One method's metric children, bound once: `.labels()` costs a lock and a dict lookup per call."""

    grpc_type: str
    grpc_service: str
    grpc_method: str
    request_streaming: bool

    def __post_init__(self) -> None:
        labels = self.labels()
        self.started = STARTED.labels(*labels)
        self.received = MSG_RECEIVED.labels(*labels)
        self.seconds = HANDLING_SECONDS.labels(*labels)
        self.handled: dict[grpc.StatusCode, Any] = {}

    def labels(self) -> tuple[str, str, str]:
        return (self.grpc_type, self.grpc_service, self.grpc_method)

    def begin(self, request: Any) -> tuple[float, Any]:
        self.started.inc()
        if self.request_streaming:
            return time.perf_counter(), _count(request, self.received)
        self.received.inc()
        return time.perf_counter(), request

    def end(self, started: float, code: grpc.StatusCode) -> None:
        handled = self.handled.get(code)
        if handled is None:
            handled = self.handled[code] = HANDLED.labels(*self.labels(), CODE_NAMES.get(code, "Unknown"))
        handled.inc()
        self.seconds.observe(time.perf_counter() - started)


async def _count(requests: AsyncIterable[Any], counter: Any) -> AsyncIterator[Any]:
    async for request in requests:
        counter.inc()
        yield request


def _instrument(fn: Callable[..., Any], rpc: _Rpc) -> Callable[..., Any]:
    sent = MSG_SENT.labels(*rpc.labels())

    if inspect.isasyncgenfunction(fn):

        async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            started, request = rpc.begin(request)
            error: BaseException | None = None
            try:
                async for response in fn(request, context):
                    sent.inc()
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                rpc.end(started, _final_code(context, error))

        return stream

    if inspect.iscoroutinefunction(fn):

        async def call(request: Any, context: aio.ServicerContext) -> Any:
            started, request = rpc.begin(request)
            error: BaseException | None = None
            try:
                response = await fn(request, context)
                # Streaming handlers written with context.write() return None; their messages
                # are not counted (only the async-generator style is).
                if response is not None:
                    sent.inc()
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                rpc.end(started, _final_code(context, error))

        return call

    return fn


class MetricsInterceptor(aio.ServerInterceptor):
    """Records grpc_server_* metrics; put it before the error interceptor so it sees mapped codes.
    Each method's wrapped handler is built once (registered handlers are the same object each call)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        rpc = _Rpc(
            _RPC_TYPES[(handler.request_streaming, handler.response_streaming)],
            service,
            method,
            handler.request_streaming,
        )
        wrapped = wrap_handler(handler, lambda fn: _instrument(fn, rpc))
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped


@dataclass
class MetricsEndpoint:
    """A running Prometheus /metrics HTTP server (daemon thread)."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.httpd.server_port

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve_metrics(port: int, host: str = "0.0.0.0") -> MetricsEndpoint:
    """Serve the default registry on host:port; port 0 picks a free one (see `.port`)."""
    httpd, thread = start_http_server(port, addr=host.strip("[]"))
    return MetricsEndpoint(httpd, thread)
