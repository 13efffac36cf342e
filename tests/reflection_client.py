"""A generic gRPC client that knows no project stubs: it learns every type from the server's
reflection service, as grpcurl does, and calls methods with JSON."""

from __future__ import annotations

import contextlib
import json

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


class ReflectionClient:
    def __init__(self, target: str, reflection_service: str = V1) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self._info = self.channel.stream_stream(
            f"/{reflection_service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        self.pool = descriptor_pool.DescriptorPool()
        self._loaded: set[str] = set()

    async def close(self) -> None:
        await self.channel.close()

    async def _ask(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        call = self._info(iter([request]))
        async for response in call:
            return response
        raise RuntimeError("reflection answered nothing")

    async def list_services(self) -> list[str]:
        r = await self._ask(reflection_pb2.ServerReflectionRequest(list_services=""))
        return sorted(s.name for s in r.list_services_response.service)

    async def _load_symbol(self, symbol: str) -> None:
        r = await self._ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
        if r.HasField("error_response"):
            raise LookupError(r.error_response.error_message)
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in r.file_descriptor_response.file_descriptor_proto]
        # add dependencies before dependants
        pending = {f.name: f for f in files if f.name not in self._loaded}
        while pending:
            for name, f in list(pending.items()):
                if all(d in self._loaded or d not in pending for d in f.dependency):
                    with contextlib.suppress(TypeError):  # already in the pool
                        self.pool.Add(f)
                    self._loaded.add(name)
                    del pending[name]

    async def describe(self, service: str) -> list[str]:
        await self._load_symbol(service)
        return [m.name for m in self.pool.FindServiceByName(service).methods]

    async def call(self, service: str, method: str, request_json: dict | None = None) -> dict:
        """Unary call with a JSON request; returns the JSON response (or the first streamed one)."""
        await self._load_symbol(service)
        m = self.pool.FindServiceByName(service).methods_by_name[method]
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        request = json_format.Parse(json.dumps(request_json or {}), req_cls())
        path = f"/{service}/{method}"
        if m.server_streaming:
            stream = self.channel.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                               response_deserializer=resp_cls.FromString)(request)
            async for item in stream:
                stream.cancel()
                return json_format.MessageToDict(item)
            raise RuntimeError("stream ended empty")
        fn = self.channel.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                      response_deserializer=resp_cls.FromString)
        return json_format.MessageToDict(await fn(request, timeout=10))
