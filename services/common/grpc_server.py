"""The one gRPC server bootstrap every Agora service (chain, miner, validator) runs on.

It adds what each service would otherwise repeat: health (`grpc.health.v1`), reflection under
both v1alpha and v1, AgoraError -> status mapping, Prometheus metrics on a separate port, message
size limits, and a graceful SIGTERM shutdown (health NOT_SERVING first, then stop with grace).

    server = AgoraServer(name="chain", port=50051, metrics_port=9090, version=__version__)
    server.add_service(chain_pb2_grpc.add_ChainServicer_to_server, servicer,
                       chain_pb2.DESCRIPTOR.services_by_name["Chain"])
    await server.start()
    server.set_serving("agora.chain.v1.Chain", True)   # after warm-up
    await server.wait_for_termination()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from services.common.error_mapping import ErrorMappingInterceptor
from services.common.metrics import MetricsEndpoint, MetricsInterceptor, serve_metrics, set_build_info

log = logging.getLogger(__name__)

REFLECTION_V1_NAME = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _package_version() -> str:
    try:
        return metadata.version("agora")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class _Registration:
    add_to_server: Callable[[Any, aio.Server], None]
    servicer: object
    name: str


@dataclass
class AgoraServer:
    """A grpc.aio server with health, reflection, error mapping and metrics.

    `port` and `metrics_port` may be 0 (pick a free port); after `start()` they hold the real
    ports. `metrics_port=None` serves no /metrics endpoint (the metrics are still recorded).
    """

    name: str
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int | None = 0
    version: str = field(default_factory=_package_version)
    grace_seconds: float = 5.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Run inside metrics and error mapping, so what they raise from handlers is mapped too.
    interceptors: Sequence[aio.ServerInterceptor] = ()

    _registrations: list[_Registration] = field(default_factory=list, init=False, repr=False)
    _server: aio.Server | None = field(default=None, init=False, repr=False)
    _health: health_aio.HealthServicer | None = field(default=None, init=False, repr=False)
    _metrics: MetricsEndpoint | None = field(default=None, init=False, repr=False)
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _stopping: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _pending: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    @property
    def service_names(self) -> list[str]:
        return [r.name for r in self._registrations]

    def add_service(
        self, add_to_server: Callable[[Any, aio.Server], None], servicer: object, service: ServiceDescriptor
    ) -> None:
        """Register a servicer before `start()`; its health is NOT_SERVING until `set_serving`."""
        if self._server is not None:
            raise RuntimeError("add_service after start()")
        self._registrations.append(_Registration(add_to_server, servicer, service.full_name))

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self.name} server already started")
        server = aio.server(
            interceptors=[MetricsInterceptor(), ErrorMappingInterceptor(), *self.interceptors],
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                # With SO_REUSEPORT a second process could bind the same port and steal half the
                # connections; we want "address in use" instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        for r in self._registrations:
            r.add_to_server(r.servicer, server)

        # The aio servicer starts with "" SERVING: the process is alive once it answers at all.
        self._health = health_aio.HealthServicer()
        for name in self.service_names:
            await self._health.set(name, _NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        enable_reflection(server, [*self.service_names, health.SERVICE_NAME])

        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc's "Failed to bind"; callers expect what sockets raise
            raise OSError(f"{self.name}: cannot bind gRPC port {address}") from exc
        if self.metrics_port is not None:
            self._metrics = serve_metrics(self.metrics_port, self.host)
            self.metrics_port = self._metrics.port
        try:
            await server.start()
        except BaseException:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            raise
        self._server, self.port = server, bound
        set_build_info(self.name, self.version)
        log.info(
            "%s %s serving gRPC on %s:%d, metrics on %s",
            self.name,
            self.version,
            self.host,
            self.port,
            self.metrics_port,
        )

    def set_serving(self, service: str, serving: bool) -> asyncio.Task[None]:
        """Readiness of one service ("" = whole server); ignored once shutdown began.

        The aio health servicer's setter is a coroutine (it wakes Watch streams), so this
        schedules it and returns the task: a bare call takes effect on the next loop turn,
        `await server.set_serving(...)` once it has.
        """
        if self._health is None:
            raise RuntimeError("set_serving before start()")
        if service and service not in self.service_names:
            raise KeyError(f"{self.name} has no service {service!r}; it has {self.service_names}")
        task = asyncio.get_running_loop().create_task(
            self._health.set(service, _SERVING if serving else _NOT_SERVING)
        )
        # The loop keeps only weak references to tasks.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def wait_for_termination(self) -> None:
        """Wait until SIGTERM/SIGINT or `stop()`; a signal triggers the graceful `stop()`."""
        loop = asyncio.get_running_loop()
        installed: list[tuple[signal.Signals, Any]] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._stop_requested.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no Unix signals
                continue
            installed.append((sig, previous))
        try:
            await self._stop_requested.wait()
            await self.stop()
        finally:
            for sig, previous in installed:
                loop.remove_signal_handler(sig)
                # remove_signal_handler resets to the default; put back what was there before.
                if previous is not None:
                    signal.signal(sig, previous)

    async def stop(self) -> None:
        """Health NOT_SERVING for all, then stop with `grace_seconds` for in-flight RPCs. Idempotent."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        self._stop_requested.set()
        if self._server is None:
            return
        log.info("%s shutting down (grace %.1fs)", self.name, self.grace_seconds)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        metrics, self._metrics = self._metrics, None
        # The metrics thread notices shutdown only every 0.5 s; overlap that with the grace period.
        await asyncio.gather(
            self._server.stop(self.grace_seconds),
            asyncio.to_thread(metrics.close) if metrics is not None else asyncio.sleep(0),
        )


def enable_reflection(server: aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection as both v1alpha (grpcio-reflection) and v1 (same servicer, renamed).

    grpcio-reflection ships only v1alpha and some clients speak only v1 (CONVENTIONS.md section 3).
    """
    names = [*service_names, reflection.SERVICE_NAME, REFLECTION_V1_NAME]
    reflection.enable_server_reflection(names, server)
    _add_reflection_v1_descriptor()
    v1_servicer = reflection.aio.ReflectionServicer(names)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                REFLECTION_V1_NAME,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        v1_servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            ),
        )
    )


def _add_reflection_v1_descriptor() -> None:
    # Without a v1 file in the pool, listing shows the v1 service but describing it is NOT_FOUND.
    pool = descriptor_pool.Default()
    with contextlib.suppress(KeyError):
        pool.FindFileByName(_REFLECTION_V1_FILE)
        return  # added by an earlier server in this process, or by a future grpcio-reflection
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = _REFLECTION_V1_FILE, "grpc.reflection.v1"

    def rename(messages: Any) -> None:
        for message in messages:
            for f in message.field:
                if f.type_name:
                    f.type_name = f.type_name.replace(old, new)
            rename(message.nested_type)

    rename(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(proto)
