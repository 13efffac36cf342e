"""Bad input to every gRPC method of every service (tests/bad_input.py builds the cases from the
request descriptors): each gets a deliberate status code, every server stays SERVING, and neither
the chain's state nor any model moves.

The chain serves from a node that never produces blocks, so a digest of its state, its totals (pool
size included) and its head must be identical before and after: a bad extrinsic that slipped into
the pool would show there even though no block applied it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from services.chain import client as calls
from services.common import keys
from services.common.redis_server import RedisServer
from tests import bad_input
from tests.bad_input import CATEGORIES, World, open_world
from tests.reflection_client import ReflectionClient

# The servers' own extras: answered by grpcio's servicers, checked in test_corrupt_bytes_...
INFRASTRUCTURE = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                  "grpc.reflection.v1.ServerReflection"}


@pytest.fixture(scope="module")
async def world(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with open_world(redis_server.url, tmp_path_factory.mktemp("bad-input")) as w:
        yield w


async def test_the_sweep_covers_every_method_each_server_serves_with_every_kind_of_bad_input(world: World):
    """Ask each server, by reflection, what it serves: a service or method added later is in the
    sweep or this fails."""
    targets = world.targets()
    swept = {(t.service.full_name, m) for t in targets for m in t.swept_methods()}
    addresses = {world.chain_address, *(f"127.0.0.1:{m.port}" for m in world.miners.values()),
                 f"127.0.0.1:{world.validator.port}"}
    served = set()
    for address in addresses:
        client = ReflectionClient(address)
        try:
            for service in set(await client.list_services()) - INFRASTRUCTURE:
                served |= {(service, m) for m in await client.describe(service)}
        finally:
            await client.close()
    assert served and served == swept
    categories: set[str] = set()
    for target in targets:
        for method in target.swept_methods():
            cases = target.cases(method)
            kinds = {c.category for c in cases}
            assert {"malformed", "empty", "past_limit"} <= kinds, (target.name, method)
            categories |= kinds
    assert categories == set(CATEGORIES)


@pytest.mark.parametrize("service", ["chain", "miner", "validator"])
async def test_bad_input_gets_a_deliberate_code_keeps_servers_up_and_changes_nothing(world: World, service: str):
    targets = [t for t in world.targets() if t.name == service]
    before, calls_before = await world.fingerprint(), world.model_calls
    result = await bad_input.sweep(targets)
    assert result.total >= 100 * len(targets)
    assert not result.failures, f"{len(result.failures)} of {result.total}:\n" + "\n".join(result.failures[:40])
    assert await world.unhealthy() == []
    assert await world.fingerprint() == before, "bad input changed the chain's state or its pool"
    # A miner computes only for a request it answered: a signed one that parsed, unknown fields and all.
    answered = result.ok("miner") + result.ok("validator", "Query")
    assert world.model_calls - calls_before <= answered
    if service == "validator":
        assert result.ok("validator", "Query") == 0, "a query was answered without a valid payment"


async def test_corrupt_bytes_are_invalid_argument_on_every_kind_of_handler(world: World):
    """grpc.aio answers UNKNOWN, with the parser's message, when a request does not parse; the shared
    error mapping makes it INVALID_ARGUMENT for unary and streaming requests and responses alike,
    the health and reflection services included."""
    calls = [
        ("/agora.chain.v1.Chain/GetAccount", "unary_unary"),
        ("/agora.chain.v1.Chain/SubscribeBlocks", "unary_stream"),
        ("/grpc.health.v1.Health/Check", "unary_unary"),
        ("/grpc.health.v1.Health/Watch", "unary_stream"),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "stream_stream"),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "stream_stream"),
    ]
    async with aio.insecure_channel(world.chain_address) as channel:
        for path, kind in calls:
            rpc = getattr(channel, kind)(path, request_serializer=bytes, response_deserializer=bytes)
            call = rpc(iter([b"\xff\xff\xff"])) if kind == "stream_stream" else rpc(b"\xff\xff\xff", timeout=5)
            with pytest.raises(aio.AioRpcError) as err:
                if kind == "unary_unary":
                    await call
                else:
                    async for _ in call:
                        pass
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (path, err.value.details())
            assert "not a valid message" in err.value.details() and "Traceback" not in err.value.details()


async def test_the_fingerprint_sees_an_extrinsic_that_was_only_queued(world: World):
    """The no-change check can fail: a valid extrinsic, queued and never applied, changes it."""
    before = await world.fingerprint()
    async with calls.ChainClient(world.chain_address) as client:
        alice = keys.dev_keypair("Alice")
        await client.submit(await client.sign(alice, calls.transfer_call(keys.dev_keypair("Bob").ss58_address, 1)),
                            wait=False)
    assert await world.fingerprint() != before
