"""Miner figures, each beside the baseline it is compared with, measured in the same run.

Every server here runs in its own process, as deployed, and one client harness (`_drive`, in this
process) calls them all. Runs alternate round by round between a figure and its baseline, so load
from other work on the machine falls on both alike; a ratio is the median of the per-round ratios.

- miner.auth_rps, miner.auth_p50_ms: signed Info calls (sr25519 verify, nonce, response signature)
  at concurrency 32, beside miner.raw_grpc_rps: a bare grpc.aio echo server, sent the very same
  signed request bytes and echoing them. miner.auth_over_raw is the median ratio of AUTH_ROUNDS
  paired rounds. The client can be what limits the bare server's rate, so beside it are each
  server process's CPU time per call (miner.raw_server_cpu_us, miner.auth_server_cpu_us) and their
  ratio miner.auth_over_raw_cpu: the throughput ratio of the two servers when each has a core.
- miner.nextword_batched_rps vs miner.nextword_serial_rps: NextWord (one prefix, top 10) on a
  SmolLM2 miner at concurrency 16, with dynamic batching (max_batch 8) and without (max_batch 1):
  the same server code, two processes.
- miner.serving_overhead: the share of throughput that serving costs against the same next-word
  search run directly on the model in a plain loop at the same batch size (0: nothing), from CPU
  seconds per prefix (the miner process's, the loop thread's), which other load on a shared machine
  moves less than wall time; the wall-clock rates are reported beside it.
- miner.peak_rss_bytes: the batched SmolLM2 miner process's peak resident memory (VmHWM).
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

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.miner.v1 import miner_pb2, miner_pb2_grpc
from services.common import keys
from services.common.redis_server import free_port

AUTH_CONCURRENCY = 32
AUTH_CALLS = 2_000            # per round
AUTH_ROUNDS = 7
NEXTWORD_CONCURRENCY = 16
NEXTWORD_CALLS = 64           # per batched round; a serial round makes half as many
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
INFO_PATH = "/agora.miner.v1.Miner/Info"


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


class _Process:
    """A server in a child process: Python code run with -c, a free port put in for PORT."""

    def __init__(self, code: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", code.replace("PORT", str(self.port))],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_serving(self, service: str, timeout: float = 600) -> None:
        async with aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{service or 'server'} did not become ready")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime

    def peak_rss(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- auth vs raw gRPC ----

# A bare grpc.aio server: no interceptors, health or reflection; the bytes in are the bytes out.
_ECHO_SERVER = """
import asyncio, grpc
from grpc import aio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
async def echo(request, context):
    return request
async def main():
    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "agora.miner.v1.Miner", {"Info": grpc.unary_unary_rpc_method_handler(echo)}),))
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)  # "" SERVING: ready
    server.add_insecure_port("127.0.0.1:PORT")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""

_AUTH_MINER = f"""
import asyncio, logging
from services.common import keys
from services.miner.main import Miner, MinerSettings
logging.basicConfig(level=logging.WARNING)
async def main():
    m = Miner(MinerSettings(task="next-token", model="echo", host="127.0.0.1", port=PORT, metrics_port=None,
                            warm_up=False), hotkey=keys.dev_keypair({MINER_KEY!r}),
              stake_of={{keys.dev_keypair({CALLER_KEY!r}).ss58_address: 1}}.get)
    await m.start()
    await m.server.wait_for_termination()
asyncio.run(main())
"""


def _signed_info_requests(n: int) -> list[bytes]:
    """n Info requests signed by the caller for the miner (signed before any clock starts)."""
    from services.miner import auth

    miner, caller = keys.dev_keypair(MINER_KEY), keys.dev_keypair(CALLER_KEY)
    out = []
    for _ in range(n):
        request = miner_pb2.InfoRequest()
        auth.sign_request(caller, INFO_PATH, request, miner.ss58_address)
        out.append(request.SerializeToString())
    return out


async def _info_round(server: _Process, requests: list[bytes]) -> tuple[float, float, float]:
    """(calls per second, median latency in s, server CPU seconds per call): Info at AUTH_CONCURRENCY."""
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        # Both servers get the same serialized bytes through the same untyped call.
        call = channel.unary_unary(INFO_PATH)
        await call(requests[0])   # connect
        cpu = server.cpu_seconds()
        rps, latencies = await _drive([lambda r=r: call(r) for r in requests[1:]], AUTH_CONCURRENCY)
        cpu_per_call = (server.cpu_seconds() - cpu) / (len(requests) - 1)
    return rps, statistics.median(latencies), cpu_per_call


async def _auth_figures() -> dict[str, float]:
    raw, miner = _Process(_ECHO_SERVER), _Process(_AUTH_MINER)
    try:
        await raw.wait_serving("")
        await miner.wait_serving("agora.miner.v1.Miner")
        rounds: dict[str, list[tuple[float, float, float]]] = {"raw": [], "auth": []}
        for i in range(AUTH_ROUNDS):
            # Alternate which goes first, so neither always meets the warmer (or busier) moment.
            order = [("raw", raw), ("auth", miner)] if i % 2 == 0 else [("auth", miner), ("raw", raw)]
            for name, server in order:
                rounds[name].append(await _info_round(server, _signed_info_requests(AUTH_CALLS + 1)))
    finally:
        raw.stop()
        miner.stop()
    raw_rps, auth_rps = [r[0] for r in rounds["raw"]], [r[0] for r in rounds["auth"]]
    return {
        "miner.raw_grpc_rps": statistics.median(raw_rps),
        "miner.auth_rps": statistics.median(auth_rps),
        "miner.auth_p50_ms": statistics.median(r[1] for r in rounds["auth"]) * 1000,
        "miner.auth_over_raw": statistics.median(a / r for a, r in zip(auth_rps, raw_rps, strict=True)),
        "miner.raw_server_cpu_us": statistics.median(r[2] for r in rounds["raw"]) * 1e6,
        "miner.auth_server_cpu_us": statistics.median(r[2] for r in rounds["auth"]) * 1e6,
        # The stricter figure: what each server's own work allows, whether or not the client kept up.
        "miner.auth_over_raw_cpu": statistics.median(r[2] for r in rounds["raw"])
        / statistics.median(r[2] for r in rounds["auth"]),
    }


# ---- NextWord on SmolLM2 ----

def _nextword_miner(max_batch: int) -> str:
    return f"""
import asyncio, logging
from services.common import keys
from services.miner.main import Miner, MinerSettings
logging.basicConfig(level=logging.WARNING)
async def main():
    m = Miner(MinerSettings(task='next-token', model='smollm2-135m', host='127.0.0.1', port=PORT,
              metrics_port=None, auth='allow-all', max_batch={max_batch}, max_wait_ms=5, threads={THREADS},
              queue_limit=256), hotkey=keys.dev_keypair({MINER_KEY!r}))
    await m.start()
    await m.server.wait_for_termination()
asyncio.run(main())
"""


class _ServedMiner(_Process):
    """A SmolLM2 miner in its own process, and a client for it."""

    def __init__(self, max_batch: int) -> None:
        super().__init__(_nextword_miner(max_batch))
        self.channel: aio.Channel | None = None

    async def start(self) -> None:
        await self.wait_serving("agora.miner.v1.Miner")
        self.channel = aio.insecure_channel(f"127.0.0.1:{self.port}")
        await self.run(NEXTWORD_CONCURRENCY)   # warm

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        self.stop()

    async def run(self, calls: int = NEXTWORD_CALLS) -> tuple[float, float]:
        """(requests per second, CPU seconds the miner process spent per request)."""
        stub = miner_pb2_grpc.MinerStub(self.channel)

        def call(i: int) -> Callable[[], Awaitable[object]]:
            request = miner_pb2.NextWordRequest(prefixes=[PREFIXES[i % len(PREFIXES)]], top_k=10)
            return lambda: stub.NextWord(request, timeout=300)

        cpu = self.cpu_seconds()
        rps, _ = await _drive([call(i) for i in range(calls)], NEXTWORD_CONCURRENCY)
        return rps, (self.cpu_seconds() - cpu) / calls


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
    """Plain, batched and serial alternate, ROUNDS times, so that other load on the machine hits all alike."""
    plain_loop = _PlainLoop()
    batched_miner, serial_miner = _ServedMiner(BATCH), _ServedMiner(1)
    plain, batched, serial = [], [], []
    try:
        await batched_miner.start()
        await serial_miner.start()
        for _ in range(ROUNDS):
            plain.append(await plain_loop.run())
            batched.append(await batched_miner.run())
            serial.append(await serial_miner.run(NEXTWORD_CALLS // 2))
        peak_rss = batched_miner.peak_rss()
    finally:
        await batched_miner.close()
        await serial_miner.close()
        plain_loop.executor.shutdown()
    out: dict[str, float] = {"miner.peak_rss_bytes": peak_rss}
    out["miner.nextword_batched_rps"] = statistics.median(rps for rps, _ in batched)
    out["miner.nextword_serial_rps"] = statistics.median(rps for rps, _ in serial)
    out["miner.nextword_batched_over_serial"] = statistics.median(
        b / s for (b, _), (s, _) in zip(batched, serial, strict=True))
    out["miner.nextword_plain_prefixes_per_s"] = statistics.median(rate for rate, _ in plain)
    # Throughput on a CPU-bound box is 1 / CPU seconds per prefix; CPU time, unlike wall time, does not
    # change much with whatever else the machine runs meanwhile.
    out["miner.nextword_served_cpu_ms"] = statistics.median(cpu for _, cpu in batched) * 1000
    out["miner.nextword_serial_cpu_ms"] = statistics.median(cpu for _, cpu in serial) * 1000
    out["miner.nextword_plain_cpu_ms"] = statistics.median(cpu for _, cpu in plain) * 1000
    out["miner.serving_overhead"] = 1 - out["miner.nextword_plain_cpu_ms"] / out["miner.nextword_served_cpu_ms"]
    return out


async def run() -> dict[str, float]:
    out = await _auth_figures()
    out |= await _nextword_figures()
    return out


if __name__ == "__main__":   # a quick look; `make bench` runs it as a group
    for key, value in asyncio.run(run()).items():
        print(f"{key} = {value:,.3f}")
