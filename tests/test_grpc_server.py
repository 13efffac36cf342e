"""The shared server bootstrap, checked over real loopback channels."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.exceptions
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from services.common import errors
from services.common.error_mapping import status_code_for
from services.common.grpc_server import AgoraServer

CHAIN = "agora.chain.v1.Chain"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MAX_MESSAGE_BYTES = 64 * 1024


class FakeChain(chain_pb2_grpc.ChainServicer):
    async def GetAccount(self, request, context):
        raise errors.InvalidAddress("bad ss58 'x'")

    async def GetChainInfo(self, request, context):
        return chain_pb2.ChainInfo(network="test", head_number=7)

    async def GetBlock(self, request, context):
        raise RuntimeError("secret detail from the database")

    async def GetExtrinsicStatus(self, request, context):
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    async def SubscribeBlocks(self, request, context):
        for number in (1, 2):
            yield chain_pb2.Block(header=chain_pb2.BlockHeader(number=number))
        raise errors.NotFound("block 3 not found")


def new_server(**kwargs) -> AgoraServer:
    server = AgoraServer(
        name="chain",
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        version="0.1.0-test",
        grace_seconds=0.5,
        max_message_bytes=MAX_MESSAGE_BYTES,
        **kwargs,
    )
    server.add_service(
        chain_pb2_grpc.add_ChainServicer_to_server,
        FakeChain(),
        chain_pb2.DESCRIPTOR.services_by_name["Chain"],
    )
    return server


@pytest.fixture
async def server() -> AsyncIterator[AgoraServer]:
    server = new_server()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def channel(server: AgoraServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


async def health_status(channel: aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return response.status


async def test_ports_are_real_after_start(server: AgoraServer) -> None:
    assert server.port > 0
    assert server.metrics_port
    assert server.metrics_port > 0


async def test_agora_error_maps_to_its_kind(channel: aio.Channel) -> None:
    stub = chain_pb2_grpc.ChainStub(channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.GetAccount(chain_pb2.GetAccountRequest(address="x"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "bad ss58 'x'"


async def test_an_unreachable_store_is_unavailable_not_internal(channel: aio.Channel) -> None:
    """Redis restarting is an outage to retry through, not a bug with an error id."""
    with pytest.raises(aio.AioRpcError) as info:
        await chain_pb2_grpc.ChainStub(channel).GetExtrinsicStatus(chain_pb2.GetExtrinsicStatusRequest())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retry" in info.value.details() and "id=" not in info.value.details()


async def test_success_passes_through(channel: aio.Channel) -> None:
    info = await chain_pb2_grpc.ChainStub(channel).GetChainInfo(chain_pb2.GetChainInfoRequest())
    assert (info.network, info.head_number) == ("test", 7)


async def test_unexpected_error_is_internal_with_logged_id(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="services.common.error_mapping"),
        pytest.raises(aio.AioRpcError) as info,
    ):
        await chain_pb2_grpc.ChainStub(channel).GetBlock(chain_pb2.GetBlockRequest())
    assert info.value.code() == grpc.StatusCode.INTERNAL
    details = info.value.details()
    match = re.fullmatch(r"internal error, id=([0-9a-f]{8})", details)
    assert match, details
    assert "secret" not in details
    [record] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
    assert "/agora.chain.v1.Chain/GetBlock" in record.getMessage()


async def test_stream_error_after_messages(channel: aio.Channel) -> None:
    call = chain_pb2_grpc.ChainStub(channel).SubscribeBlocks(chain_pb2.SubscribeBlocksRequest())
    numbers = []
    with pytest.raises(aio.AioRpcError) as info:
        async for block in call:
            numbers.append(block.header.number)
    assert numbers == [1, 2]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "block 3 not found"


async def test_health_readiness_per_service(server: AgoraServer, channel: aio.Channel) -> None:
    assert await health_status(channel, "") == SERVING
    assert await health_status(channel, CHAIN) == NOT_SERVING
    await server.set_serving(CHAIN, True)
    assert await health_status(channel, CHAIN) == SERVING
    server.set_serving(CHAIN, False)  # not awaited: still applied before the next RPC
    assert await health_status(channel, CHAIN) == NOT_SERVING
    with pytest.raises(aio.AioRpcError) as info:
        await health_status(channel, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(KeyError):
        server.set_serving("agora.chain.v1.Typo", True)


async def test_stop_flips_health_before_closing() -> None:
    server = new_server()
    await server.start()
    await server.set_serving(CHAIN, True)
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # A Watch is an in-flight RPC, so it lives through the grace period and sees the flip.
        watches = {name: stub.Watch(health_pb2.HealthCheckRequest(service=name)) for name in ("", CHAIN)}
        for watch in watches.values():
            assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop())
        for watch in watches.values():
            assert (await watch.read()).status == NOT_SERVING
        await stopping
        for watch in watches.values():
            watch.cancel()
        with pytest.raises(aio.AioRpcError) as info:
            await health_status(channel, "")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await server.stop()  # idempotent


async def test_sigterm_stops_gracefully() -> None:
    server = new_server()
    await server.start()
    previous = signal.getsignal(signal.SIGTERM)
    waiting = asyncio.create_task(server.wait_for_termination())
    await asyncio.sleep(0)  # let it install its signal handlers
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(waiting, timeout=10)
    assert signal.getsignal(signal.SIGTERM) == previous
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await health_status(channel, "")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_wait_for_termination_returns_on_stop(server: AgoraServer) -> None:
    waiting = asyncio.create_task(server.wait_for_termination())
    await asyncio.sleep(0)
    await server.stop()
    await asyncio.wait_for(waiting, timeout=10)


async def reflect(channel: aio.Channel, version: str, request: reflection_pb2.ServerReflectionRequest):
    if version == "v1alpha":
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]))
    else:
        # v1 and v1alpha messages are wire-identical; only the method path differs.
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([request]))
    [response] = [r async for r in call]
    return response


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_reflection(channel: aio.Channel, version: str) -> None:
    listed = await reflect(channel, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert {s.name for s in listed.list_services_response.service} == {
        CHAIN,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
    for symbol, filename in [
        (CHAIN, "agora/chain/v1/chain.proto"),
        ("grpc.health.v1.Health", "grpc_health/v1/health.proto"),
        ("grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto"),
    ]:
        response = await reflect(
            channel, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        )
        assert not response.HasField("error_response"), (symbol, response.error_response)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in response.file_descriptor_response.file_descriptor_proto
        ]
        [described] = [f for f in files if f.name == filename]
        assert symbol.rpartition(".")[2] in [s.name for s in described.service]
    v1 = next(f for f in files if f.name == "grpc/reflection/v1/reflection.proto")
    assert v1.package == "grpc.reflection.v1"
    assert v1.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


async def test_metrics(server: AgoraServer, channel: aio.Channel) -> None:
    stub = chain_pb2_grpc.ChainStub(channel)
    with pytest.raises(aio.AioRpcError):
        await stub.GetAccount(chain_pb2.GetAccountRequest(address="x"))
    with pytest.raises(aio.AioRpcError):
        await stub.GetBlock(chain_pb2.GetBlockRequest())
    with pytest.raises(aio.AioRpcError):
        async for _ in stub.SubscribeBlocks(chain_pb2.SubscribeBlocksRequest()):
            pass
    await stub.GetChainInfo(chain_pb2.GetChainInfoRequest())
    await health_status(channel, "")
    assert server.metrics_port is not None
    families = await asyncio.to_thread(scrape, server.metrics_port)

    def value(sample: str, **labels: str) -> float:
        family = sample.removesuffix("_total").removesuffix("_count")
        found = [s.value for s in families[family] if s.name == sample and labels.items() <= s.labels.items()]
        assert found, (sample, labels)
        return sum(found)

    def handled(code: str, **labels: str) -> float:
        return value("grpc_server_handled_total", grpc_code=code, **labels)

    unary = {"grpc_service": CHAIN, "grpc_type": "unary"}
    assert handled("InvalidArgument", grpc_method="GetAccount", **unary) >= 1
    assert handled("Internal", grpc_method="GetBlock", **unary) >= 1
    assert handled("OK", grpc_method="GetChainInfo", **unary) >= 1
    assert value("grpc_server_started_total", grpc_method="GetAccount", **unary) >= 1
    assert value("grpc_server_handling_seconds_count", grpc_method="GetAccount", **unary) >= 1
    stream = {"grpc_service": CHAIN, "grpc_method": "SubscribeBlocks", "grpc_type": "server_stream"}
    assert handled("NotFound", **stream) >= 1
    assert value("grpc_server_msg_sent_total", **stream) >= 2
    assert value("grpc_server_msg_received_total", **stream) >= 1
    # The interceptor sees the built-in services too, not just ours.
    assert handled("OK", grpc_service="grpc.health.v1.Health", grpc_method="Check", grpc_type="unary") >= 1
    assert value("agora_build_info", service="chain", version="0.1.0-test") == 1


def all_subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *all_subclasses(direct))]


def test_every_agora_error_maps_to_a_non_internal_code() -> None:
    subclasses = all_subclasses(errors.AgoraError)
    assert errors.InvalidAddress in subclasses
    unmapped = [c.__name__ for c in subclasses if status_code_for(c("x")) is grpc.StatusCode.INTERNAL]
    assert unmapped == []
    assert status_code_for(errors.InsufficientFunds("x")) is grpc.StatusCode.FAILED_PRECONDITION
    assert status_code_for(ValueError("x")) is grpc.StatusCode.INTERNAL


async def test_oversized_message_is_rejected_and_server_keeps_answering(channel: aio.Channel) -> None:
    stub = chain_pb2_grpc.ChainStub(channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.GetAccount(chain_pb2.GetAccountRequest(address="x" * (MAX_MESSAGE_BYTES + 1)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(aio.AioRpcError) as info:
        await stub.GetAccount(chain_pb2.GetAccountRequest(address="x"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_two_servers_never_share_a_port(server: AgoraServer) -> None:
    other = AgoraServer(name="other", host="127.0.0.1", port=server.port, metrics_port=None)
    with pytest.raises(OSError, match="cannot bind"):
        await other.start()
