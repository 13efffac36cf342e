"""Miner figures, each beside the baseline it is compared with, measured in the same run.

- miner.auth_rps, miner.auth_p50_ms: signed Info calls (sr25519 verify, nonce, response signature)
  at concurrency 32, beside miner.raw_grpc_rps: a bare grpc.aio echo server under the same client.
  Both servers run in this process with the client on one event loop, so the two are comparable;
  requests are signed before the clock starts.
- miner.nextword_batched_rps vs miner.nextword_serial_rps: NextWord (one prefix, top 10) on a
  SmolLM2 miner at concurrency 16, with dynamic batching (max_batch 8) and without (max_batch 1).
  That miner is its own process, as deployed.
- miner.serving_overhead: the share of throughput that serving costs against the same next-word
  search run directly on the model in a plain loop at the same batch size (0: nothing), from CPU
  seconds per prefix (the miner process's, the loop thread's), which other load on a shared machine
  does not move; the wall-clock rates are reported beside it. Plain and served alternate, three
  rounds each (medians).
- miner.peak_rss_bytes: the SmolLM2 miner process's peak resident memory (VmHWM) after the runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.miner.v1 import miner_pb2, miner_pb2_grpc
from services.common import keys
from services.common.redis_server import free_port

AUTH_CONCURRENCY = 32
AUTH_CALLS = 4_000
NEXTWORD_CONCURRENCY = 16
NEXTWORD_CALLS = 64
ROUNDS = 3
BATCH = 8
# One torch thread in the miner and in the plain loop: beside any other busy process on 2 cores,
# two OpenMP threads per process oversubscribe and stall (seen here: 0.7 s -> 3.5-4.5 s a batch).
THREADS = 1
PREFIXES = [
    "The capital of France is", "She opened the door and", "In 1969, Neil Armstrong became the first",
    "Water boils at 100 degrees", "The quick brown fox jumps over the lazy", "Thank you very",
    "He was born in London and grew up in", "Please read the instructions carefully before",
]
MINER_KEY = "Bob"
CALLER_KEY = "Alice"


async def _drive(calls: list[Callable[[], Awaitable[object]]], concurrency: int) -> tuple[float, list[float]]:
    """Run `calls` with `concurrency` workers; returns (calls per second, per-call latencies in s)."""
    queue = list(reversed(calls))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            call = queue.pop()
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(calls) / (time.perf_counter() - started), latencies


# ---- auth vs raw gRPC ----

async def _raw_grpc_rps() -> float:
    async def echo(request: bytes, context: aio.ServicerContext) -> bytes:
        return request

    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            payload = miner_pb2.InfoRequest().SerializeToString()
            await call(payload)
            rps, _ = await _drive([lambda: call(payload)] * AUTH_CALLS, AUTH_CONCURRENCY)
    finally:
        await server.stop(None)
    return rps


async def _auth_rps() -> tuple[float, float]:
    from services.miner import auth
    from services.miner.main import Miner, MinerSettings

    miner_key, caller = keys.dev_keypair(MINER_KEY), keys.dev_keypair(CALLER_KEY)
    miner = Miner(
        MinerSettings(task="next-token", model="echo", host="127.0.0.1", port=0, metrics_port=None, warm_up=False),
        hotkey=miner_key, stake_of={caller.ss58_address: 1}.get,
    )
    await miner.start()
    await miner.ready()
    try:
        path = auth.method_path("Info")
        requests = []
        for _ in range(AUTH_CALLS + 1):
            r = miner_pb2.InfoRequest()
            auth.sign_request(caller, path, r, miner_key.ss58_address)
            requests.append(r)
        async with aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel:
            stub = miner_pb2_grpc.MinerStub(channel)
            await stub.Info(requests.pop())
            rps, latencies = await _drive([lambda r=r: stub.Info(r) for r in requests], AUTH_CONCURRENCY)
    finally:
        await miner.stop()
    return rps, statistics.median(latencies) * 1000


# ---- NextWord on SmolLM2, served by its own process ----

def _child_code(port: int, max_batch: int) -> str:
    return (
        "import asyncio, logging\n"
        "from services.common import keys\n"
        "from services.miner.main import Miner, MinerSettings\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "async def main():\n"
        f"    m = Miner(MinerSettings(task='next-token', model='smollm2-135m', host='127.0.0.1', port={port},\n"
        f"              metrics_port=None, auth='allow-all', max_batch={max_batch}, max_wait_ms=5, threads={THREADS},\n"
        f"              queue_limit=256), hotkey=keys.dev_keypair({MINER_KEY!r}))\n"
        "    await m.start()\n"
        "    await m.server.wait_for_termination()\n"
        "    await m.stop()\n"
        "asyncio.run(main())\n"
    )


async def _wait_serving(port: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"miner exited with {proc.returncode}")
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(service="agora.miner.v1.Miner"), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("miner did not become ready")


def _peak_rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    return float("nan")


class _ServedMiner:
    """A SmolLM2 miner in its own process, and a client for it."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.channel: aio.Channel | None = None

    async def __aenter__(self) -> _ServedMiner:
        self.proc = subprocess.Popen([sys.executable, "-c", _child_code(self.port, self.max_batch)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await _wait_serving(self.port, self.proc)
        self.channel = aio.insecure_channel(f"127.0.0.1:{self.port}")
        await self.rps(NEXTWORD_CONCURRENCY)   # warm
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)

    async def rps(self, calls: int = NEXTWORD_CALLS) -> float:
        return (await self.run(calls))[0]

    async def run(self, calls: int = NEXTWORD_CALLS) -> tuple[float, float]:
        """(requests per second, CPU seconds the miner process spent per request)."""
        stub = miner_pb2_grpc.MinerStub(self.channel)

        def call(i: int) -> Callable[[], Awaitable[object]]:
            request = miner_pb2.NextWordRequest(prefixes=[PREFIXES[i % len(PREFIXES)]], top_k=10)
            return lambda: stub.NextWord(request, timeout=300)

        cpu = self.cpu_seconds()
        rps, _ = await _drive([call(i) for i in range(calls)], NEXTWORD_CONCURRENCY)
        return rps, (self.cpu_seconds() - cpu) / calls

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime

    def peak_rss(self) -> float:
        assert self.proc is not None
        return _peak_rss(self.proc.pid)


class _PlainLoop:
    """The same whole-word search called directly on the model, BATCH prefixes a call, on one thread."""

    def __init__(self) -> None:
        from services.miner.model import LoadOptions, load_model

        self.executor = ThreadPoolExecutor(1)   # torch's thread setting belongs to the calling thread
        self.model = self.executor.submit(load_model, "smollm2-135m", LoadOptions(threads=THREADS)).result()
        self.executor.submit(self._loop, 1).result()   # warm

    def _loop(self, batches: int) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.thread_time()   # one torch thread: all compute is this thread's
        for i in range(batches):
            self.model.next_words([PREFIXES[(i * BATCH + j) % len(PREFIXES)] for j in range(BATCH)], 10)
        n = batches * BATCH
        return n / (time.perf_counter() - started), (time.thread_time() - cpu) / n

    async def run(self) -> tuple[float, float]:
        """(prefixes per second, CPU seconds per prefix)."""
        return await asyncio.wrap_future(self.executor.submit(self._loop, NEXTWORD_CALLS // BATCH))


async def _nextword_figures() -> dict[str, float]:
    """Served and plain alternate, ROUNDS times, so that other load on the machine hits both alike."""
    out: dict[str, float] = {}
    plain_loop = _PlainLoop()
    plain, batched = [], []
    async with _ServedMiner(BATCH) as miner:
        for _ in range(ROUNDS):
            plain.append(await plain_loop.run())
            batched.append(await miner.run())
        out["miner.peak_rss_bytes"] = miner.peak_rss()
    plain_loop.executor.shutdown()
    async with _ServedMiner(1) as miner:
        serial = [await miner.rps(NEXTWORD_CALLS // 2) for _ in range(ROUNDS)]
    out["miner.nextword_batched_rps"] = statistics.median(rps for rps, _ in batched)
    out["miner.nextword_serial_rps"] = statistics.median(serial)
    out["miner.nextword_batched_over_serial"] = out["miner.nextword_batched_rps"] / out["miner.nextword_serial_rps"]
    out["miner.nextword_plain_prefixes_per_s"] = statistics.median(rate for rate, _ in plain)
    # Throughput on a CPU-bound box is 1 / CPU seconds per prefix; CPU time, unlike wall time, does not
    # change with whatever else the machine runs meanwhile.
    out["miner.nextword_served_cpu_ms"] = statistics.median(cpu for _, cpu in batched) * 1000
    out["miner.nextword_plain_cpu_ms"] = statistics.median(cpu for _, cpu in plain) * 1000
    out["miner.serving_overhead"] = 1 - out["miner.nextword_plain_cpu_ms"] / out["miner.nextword_served_cpu_ms"]
    return out


async def run() -> dict[str, float]:
    out: dict[str, float] = {}
    out["miner.raw_grpc_rps"] = await _raw_grpc_rps()
    out["miner.auth_rps"], out["miner.auth_p50_ms"] = await _auth_rps()
    out["miner.auth_over_raw"] = out["miner.auth_rps"] / out["miner.raw_grpc_rps"]
    out |= await _nextword_figures()
    return out


if __name__ == "__main__":   # a quick look; `make bench` runs it as a group
    for key, value in asyncio.run(run()).items():
        print(f"{key} = {value:,.3f}")
