"""Overload: a miner offered ten times what it can compute, and a validator whose miners misbehave.

The miner runs in its own process (its memory and event loop are its own, as deployed) with a model
that costs a fixed BATCH_S of sleep per batch, so its capacity is known (max_batch rows per BATCH_S)
however busy the machine is. Load is offered open-loop: requests arrive at a set rate whatever the
answers (bench/reliability_load.offer_load, which measures a real model the same way). Latency
bounds are generous multiples of what the queue's size allows, counted in the batches the miner
actually ran, or comparisons between callers of the same run; never tight timings: speed is
measured by the bench, not asserted here.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.miner_bench import _Process
from bench.reliability_load import LoadResult, offer_load
from services.chain import client as calls
from services.common import keys
from services.miner.client import MinerClient
from tests.test_validator import BOB, Net, Oracle, make_net, write_data

MINER = keys.dev_keypair("Bob")
BIG = keys.dev_keypair("Alice")          # a validator with much stake
SMALL = keys.dev_keypair("Charlie")      # a validator with little stake

BATCH_S = 0.1
MAX_BATCH = 4
QUEUE_LIMIT = 16
CAPACITY_RPS = MAX_BATCH / BATCH_S       # one-row requests per second
PHASE_S = 3.0
VIP = 0.2                                # the high-stake caller's share of capacity during the flood

_MINER = f"""
import asyncio, logging, time
from services.common import keys
from services.miner import toys
from services.miner.main import Miner, MinerSettings
logging.basicConfig(level=logging.WARNING)

class FixedCost(toys.Echo):
    # Echo that takes BATCH_S per batch, however many rows: a model whose capacity is known.
    def next_words(self, prefixes, top_k):
        time.sleep({BATCH_S})
        return super().next_words(prefixes, top_k)

async def main():
    stakes = {{keys.dev_keypair("Alice").ss58_address: 1_000_000, keys.dev_keypair("Charlie").ss58_address: 10}}
    m = Miner(MinerSettings(netuid=1, model="echo", host="127.0.0.1", port=PORT, metrics_port=None, warm_up=False,
                            max_batch={MAX_BATCH}, max_wait_ms=2, queue_limit={QUEUE_LIMIT}),
              hotkey=keys.dev_keypair("Bob"), stake_of=stakes.get, loader=FixedCost)
    await m.start()
    await m.server.wait_for_termination()
asyncio.run(main())
"""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.fixture
async def miner() -> AsyncIterator[_Process]:
    process = _Process(_MINER)
    try:
        await process.wait_serving("agora.miner.v1.Miner", timeout=120)
        yield process
    finally:
        process.stop()


async def offer(client: MinerClient, factor: float, seconds: float = PHASE_S) -> LoadResult:
    async def call(i: int) -> object:
        return await client.next_word([f"item {i} of the list"], top_k=2)

    return await offer_load(call, factor * CAPACITY_RPS, seconds)


async def test_a_miner_at_ten_times_capacity_sheds_serves_stake_bounds_memory_and_latency_then_recovers(
    miner: _Process,
):
    target = f"127.0.0.1:{miner.port}"
    async with aio.insecure_channel(target) as channel:
        small = MinerClient(target, SMALL, MINER.ss58_address, channel=channel)
        big = MinerClient(target, BIG, MINER.ss58_address, channel=channel)
        await offer(small, 1, 1.0)   # warm: the process's allocations settle
        normal = await offer(small, 1)
        rss_before = rss_bytes(miner.proc.pid)

        async def vip() -> LoadResult:   # the high-stake caller asks now and then during the flood
            await asyncio.sleep(0.5)
            return await offer(big, VIP, PHASE_S - 1)

        flood, high = await asyncio.gather(offer(small, 10), vip())
        rss_growth = rss_bytes(miner.proc.pid) - rss_before
        await asyncio.sleep(QUEUE_LIMIT / MAX_BATCH * BATCH_S * 2)   # what the flood admitted drains
        after = await offer(small, 1, 2.0)
        status = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="agora.miner.v1.Miner"))
        info = await big.info()
    summary = {name: (r.ok, r.shed, r.other, round(r.ok_rps, 1), round(r.quantile(0.5), 3), round(r.quantile(0.99), 3),
                      round(r.quantile(0.95, shed=True), 3))
               for name, r in (("1x", normal), ("10x", flood), ("vip", high), ("after", after))}
    print(summary, f"rss growth {rss_growth / 2**20:.1f} MiB")
    for r in (normal, flood, high, after):
        assert r.other == {}, summary               # answered or shed: nothing else, no crash
    # Most of the flood is refused, and at once: refusals come back faster than admitted answers (but
    # for the few requests the high-stake caller pushed out of the queue). The rest is served at about
    # full speed.
    assert flood.shed >= 0.6 * PHASE_S * 10 * CAPACITY_RPS, summary
    assert flood.quantile(0.95, shed=True) < flood.quantile(0.5), summary
    assert flood.ok_rps >= 0.5 * CAPACITY_RPS, summary
    # An admitted request waits for the bounded queue ahead of it, the batch running and its own: in
    # the batches this miner ran (however long the busy machine made them), and with room to spare.
    batch_s = MAX_BATCH / flood.ok_rps
    assert flood.quantile(0.99) <= 3 * (QUEUE_LIMIT / MAX_BATCH + 2) * batch_s, summary
    assert rss_growth < 64 * 2**20, summary      # the flood leaves the miner's memory where it was
    # The high-stake caller goes ahead of the flood: every call answered, sooner than the flood's.
    assert high.shed == 0 and high.ok == int(VIP * CAPACITY_RPS * (PHASE_S - 1)), summary
    assert high.quantile(0.5) < flood.quantile(0.5) and high.quantile(1.0) <= flood.quantile(0.99), summary
    # Load over: it serves as before the flood.
    assert after.shed <= 0.05 * after.offered_rps * 2.0, summary
    assert after.quantile(0.99) <= 2 * normal.quantile(0.99) + 2 * batch_s, summary
    assert status.status == health_pb2.HealthCheckResponse.SERVING and info.ready


# ---- a validator when a third of its miners misbehave ----

METHODS = ("Info", "NextWord", "Generate", "Translate", "Embed")


class RawMiner:
    """A gRPC server at a miner's address, answering every Miner method with `answer` (raw bytes)."""

    def __init__(self) -> None:
        self.server = aio.server()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "agora.miner.v1.Miner", {m: grpc.unary_unary_rpc_method_handler(self.answer) for m in METHODS}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def answer(self, request: bytes, context: aio.ServicerContext) -> bytes:
        raise NotImplementedError

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(None)


class HangingMiner(RawMiner):
    """Accepts every call and never answers; counts the calls still hanging."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = 0

    async def answer(self, request: bytes, context: aio.ServicerContext) -> bytes:
        self.hanging += 1
        try:
            await asyncio.Event().wait()
        finally:   # cancelled when the caller's deadline passes
            self.hanging -= 1
        raise AssertionError("unreachable")


class GarbageMiner(RawMiner):
    """Answers every call at once with bytes that are no valid response."""

    async def answer(self, request: bytes, context: aio.ServicerContext) -> bytes:
        return random.Random(len(request)).randbytes(256)


class ResettingMiner:
    """Accepts TCP connections and resets them at once (SO_LINGER 0: an RST, not a FIN)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def reset(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.reset, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return write_data(tmp_path_factory.mktemp("overload-data"))


async def serve_bad(net: Net, name: str, port: int) -> str:
    """Register a hotkey for a misbehaving server on `port`; its hotkey."""
    key = keys.dev_keypair(f"{name}-{net.netuid}")
    await net.run(BOB, calls.burned_register_call(net.netuid, key.ss58_address))
    await net.run(key, calls.serve_axon_call(net.netuid, "127.0.0.1", port))
    return key.ss58_address


async def test_a_validator_keeps_its_rounds_on_time_when_a_third_of_its_miners_hang_reset_or_send_garbage(
    redis_server, data,
):
    timeout_s = 1.0
    interval_s = timeout_s + 0.5
    async for net in make_net(redis_server, data):
        hang, garbage, reset = HangingMiner(), GarbageMiner(), ResettingMiner()
        for server in (hang, garbage, reset):
            await server.start()
        try:
            loop = net.loop(timeout_s=timeout_s, round_interval_s=interval_s)
            await loop.start()
            await net.add_miners([Oracle(data), Oracle(data), "echo", "echo", "noise", "noise"])
            good = [k.ss58_address for k in net.keys]
            bad = {await serve_bad(net, name, server.port): name
                   for name, server in (("hang", hang), ("garbage", garbage), ("reset", reset))}
            rounds = [await loop.run_round() for _ in range(3)]
            for r in rounds:
                outcome = {o.hotkey: o for o in r.outcomes}
                assert set(outcome) == {*good, *bad}
                assert r.seconds < 2 * timeout_s, r.seconds          # the hung miner costs its deadline, no more
                assert all(outcome[k].result == "answered" for k in good), [outcome[k] for k in good]
                assert outcome[good[0]].score.metric < 0.2            # the oracle still scores as ever
                for hotkey, name in bad.items():
                    assert outcome[hotkey].result == ("timeout" if name == "hang" else "failed"), outcome[hotkey]
                    assert outcome[hotkey].score.score == 0 and r.shares.get(outcome[hotkey].uid, 0.0) == 0
            await asyncio.sleep(0.2)
            assert hang.hanging == 0   # each deadline cancelled its call: nothing piles up on either side
            # Left to run, the loop starts a round every interval despite them.
            before, window_s = loop.rounds, 4 * interval_s
            running = asyncio.create_task(loop.run())
            await asyncio.sleep(window_s)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            assert loop.rounds - before >= int(window_s / interval_s) - 1, loop.rounds - before
            await loop.pool.close()
        finally:
            for server in (hang, garbage, reset):
                await server.stop()
