"""A miner under load: throughput and p99 latency of the calls it admits at 1x, 3x and 10x its capacity.

A SmolLM2 miner with the shipped queue settings (max_batch 8, queue_limit 64) runs in its own
process, one torch thread, signature auth. Its capacity is measured first: NextWord calls (one
prefix, top 10, as a validator sends) from a closed loop that keeps the queue full. Then requests
arrive open-loop, at a fixed rate whatever the answers, at 1x, 3x and 10x that capacity, and once
more at 1x after the overload (recovery). For each: answered calls per second, p50 and p99 of the
answered calls' latency, how many were shed with RESOURCE_EXHAUSTED (and how fast the refusal came),
how many failed otherwise (must be 0), and the miner's resident memory after it.

`offer_load` is the open-loop driver; tests/test_reliability_overload.py uses it too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc import aio

from bench.miner_bench import PREFIXES, _drive, _Process
from services.common import keys

MINER_KEY, CALLER_KEY = "Bob", "Alice"
PHASE_SECONDS = 8.0
CAPACITY_CALLS = 96
LOADS = (("1x", 1.0), ("3x", 3.0), ("10x", 10.0), ("after", 1.0))

_MINER = f"""
import asyncio, logging
from services.common import keys
from services.miner.main import Miner, MinerSettings
logging.basicConfig(level=logging.WARNING)
async def main():
    m = Miner(MinerSettings(task='next-token', model='smollm2-135m', host='127.0.0.1', port=PORT,
                            metrics_port=None, threads=1), hotkey=keys.dev_keypair({MINER_KEY!r}),
              stake_of={{keys.dev_keypair({CALLER_KEY!r}).ss58_address: 1}}.get)
    await m.start()
    await m.server.wait_for_termination()
asyncio.run(main())
"""


@dataclass
class LoadResult:
    """What one open-loop phase saw."""

    offered_rps: float
    seconds: float                                        # from the first arrival to the last answer
    latencies_ok: list[float] = field(default_factory=list)     # seconds, of the answered calls
    latencies_shed: list[float] = field(default_factory=list)   # seconds, of those refused RESOURCE_EXHAUSTED
    other: dict[str, int] = field(default_factory=dict)         # any other outcome, by status code name

    @property
    def ok(self) -> int:
        return len(self.latencies_ok)

    @property
    def shed(self) -> int:
        return len(self.latencies_shed)

    @property
    def ok_rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def quantile(self, q: float, *, shed: bool = False) -> float:
        """The q-quantile of answered (or shed) calls' latency in seconds (nearest rank); nan if none."""
        ranked = sorted(self.latencies_shed if shed else self.latencies_ok)
        if not ranked:
            return math.nan
        return ranked[min(len(ranked) - 1, math.ceil(q * len(ranked)) - 1)]


async def offer_load(call: Callable[[int], Awaitable[object]], rate_per_s: float, seconds: float) -> LoadResult:
    """Start call(i) at rate_per_s for `seconds` (open loop: arrivals do not wait for answers), then
    wait for every call to end. A call's AioRpcError is its outcome; anything else propagates."""
    result = LoadResult(rate_per_s, 0.0)

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            await call(i)
        except aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                result.latencies_shed.append(time.perf_counter() - t0)
            else:
                result.other[err.code().name] = result.other.get(err.code().name, 0) + 1
            return
        result.latencies_ok.append(time.perf_counter() - t0)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    total = int(rate_per_s * seconds)
    while len(tasks) < total:
        due = min(total, int((time.perf_counter() - started) * rate_per_s) + 1)
        tasks.extend(asyncio.ensure_future(one(i)) for i in range(len(tasks), due))
        await asyncio.sleep(min(0.005, 1 / rate_per_s))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    return result


def _rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    return math.nan


async def _figures() -> dict[str, float]:
    from agora.miner.v1 import miner_pb2
    from services.miner.client import MinerClient

    miner = _Process(_MINER)
    out: dict[str, float] = {}
    try:
        await miner.wait_serving("agora.miner.v1.Miner")
        async with MinerClient(f"127.0.0.1:{miner.port}", keys.dev_keypair(CALLER_KEY),
                               keys.dev_keypair(MINER_KEY).ss58_address, timeout=60) as client:

            async def call(i: int) -> object:
                return await client.call("NextWord", miner_pb2.NextWordRequest(
                    prefixes=[PREFIXES[i % len(PREFIXES)]], top_k=10))

            # Capacity: a closed loop of 16 callers keeps two batches' worth waiting at all times.
            await _drive([lambda i=i: call(i) for i in range(16)], 16)   # warm
            capacity, _ = await _drive([lambda i=i: call(i) for i in range(CAPACITY_CALLS)], 16)
            out["reliability.miner_capacity_rps"] = capacity
            for name, factor in LOADS:
                r = await offer_load(call, factor * capacity, PHASE_SECONDS)
                out[f"reliability.miner_rps_{name}"] = r.ok_rps
                out[f"reliability.miner_p50_ms_{name}"] = r.quantile(0.5) * 1000
                out[f"reliability.miner_p99_ms_{name}"] = r.quantile(0.99) * 1000
                out[f"reliability.miner_shed_{name}"] = float(r.shed)
                if r.shed:
                    out[f"reliability.miner_shed_p99_ms_{name}"] = r.quantile(0.99, shed=True) * 1000
                out[f"reliability.miner_failed_{name}"] = float(sum(r.other.values()))
                out[f"reliability.miner_rss_bytes_{name}"] = _rss(miner.proc.pid)
                await asyncio.sleep(1.0)   # the queue drains between phases
    finally:
        miner.stop()
    out["reliability.miner_p99_10x_over_1x"] = out["reliability.miner_p99_ms_10x"] / out["reliability.miner_p99_ms_1x"]
    return out


def run() -> dict[str, float]:
    return asyncio.run(_figures())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key} = {value:,.3f}")
