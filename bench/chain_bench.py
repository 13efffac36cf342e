"""chain.transfer_tps beside the two limits it stands on, measured in the same run.

The chain runs as its own process (`agora chain start`, as in deployment) on its own Redis; the
load comes from this process. Transfers are signed before the clock starts: the figure is what
the chain finalizes, not how fast this client signs.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient, sign_extrinsic, transfer_call
from services.common import keys
from services.common.redis_server import RedisServer, free_port

SENDERS = 64
PER_SENDER = 150
BATCH = 100
BLOCK_TIME_MS = 500


def _accounts() -> list[Keypair]:
    return [Keypair.create_from_uri(f"//bench/{i}") for i in range(SENDERS)]


async def _start_chain(workdir: Path, redis: RedisServer, accounts: list[Keypair]) -> tuple[subprocess.Popen, int]:
    genesis = workdir / "genesis.json"
    genesis.write_text(json.dumps({"balances": {k.ss58_address: 10**15 for k in accounts}}))
    port = free_port()
    log = (workdir / "chain.log").open("w")  # the child keeps writing after this function returns
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "chain", "start", "--redis-url", redis.url, "--network", "bench",
         "--port", str(port), "--metrics-port", str(free_port()), "--block-time-ms", str(BLOCK_TIME_MS),
         "--genesis", str(genesis)],
        stdout=subprocess.DEVNULL, stderr=log, env=os.environ | {"AGORA_LOG_LEVEL": "WARNING"},
    )
    async with ChainClient(f"127.0.0.1:{port}", timeout=1) as c:
        for _ in range(200):
            try:
                if (await c.info()).head_number >= 1:
                    return proc, port
            except Exception:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"chain did not start: see {workdir / 'chain.log'}")


async def _presign(client: ChainClient, accounts: list[Keypair], count: int) -> list[list[chain_pb2.Extrinsic]]:
    chain_id = await client.chain_id()
    out = []
    for i, kp in enumerate(accounts):
        start = (await client.account(kp.ss58_address)).pool_nonce
        dest = accounts[(i + 1) % len(accounts)].ss58_address
        out.append([sign_extrinsic(kp, start + j, chain_id, transfer_call(dest, 1_000 + j)) for j in range(count)])
    return out


async def _finalized_tps(client: ChainClient, per_sender: list[list[chain_pb2.Extrinsic]], batch: bool) -> float:
    """Submit everything (each sender's nonces in order, senders concurrent) and time until the last
    extrinsic of every sender is in a finalized block."""
    total = sum(len(x) for x in per_sender)

    async def unary(xts: list[chain_pb2.Extrinsic]) -> bytes:
        last = b""
        for xt in xts:
            last = (await client.submit(xt, wait=False)).hash
        return last

    async def batched(xts: list[chain_pb2.Extrinsic]) -> bytes:
        last = b""
        for i in range(0, len(xts), BATCH):
            resp = await client.stub.SubmitExtrinsics(chain_pb2.SubmitExtrinsicsRequest(extrinsics=xts[i:i + BATCH]))
            bad = [r for r in resp.results if r.code]
            if bad:
                raise RuntimeError(f"refused: {bad[0].message}")
            last = resp.results[-1].hash
        return last

    started = time.perf_counter()
    lasts = await asyncio.gather(*((batched if batch else unary)(xts) for xts in per_sender))
    for h in lasts:
        while (await client.status(h)).state == chain_pb2.ExtrinsicStatus.QUEUED:
            await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    statuses = [await client.status(h) for h in lasts]
    assert all(s.state == chain_pb2.ExtrinsicStatus.INCLUDED and s.success for s in statuses), statuses[0]
    return total / elapsed


def sr25519_verify_per_s(seconds: float = 2.0) -> float:
    kp = keys.dev_keypair("Alice")
    message = os.urandom(120)  # about the size of a transfer payload
    sig = kp.sign(message)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(500):
            keys.verify(kp.ss58_address, message, sig)
        n += 500
    return n / (time.perf_counter() - started)


async def redis_lua_per_s(url: str, seconds: float = 2.0) -> float:
    r = aioredis.from_url(url)
    script = r.register_script("return 1")
    await script()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await script()
        n += 1
    rate = n / (time.perf_counter() - started)
    await r.aclose()
    return rate


async def run() -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="agora-bench-chain-"))
    redis = RedisServer(data_dir=workdir / "redis", appendonly=True).start()
    accounts = _accounts()
    proc, port = await _start_chain(workdir, redis, accounts)
    out: dict[str, float] = {}
    try:
        async with ChainClient(f"127.0.0.1:{port}", timeout=60) as client:
            unary_runs, batch_runs = [], []
            for _ in range(2):
                unary_runs.append(await _finalized_tps(client, await _presign(client, accounts, PER_SENDER), False))
                batch_runs.append(await _finalized_tps(client, await _presign(client, accounts, PER_SENDER), True))
            out["chain.transfer_tps"] = statistics.median(unary_runs)
            out["chain.transfer_tps_batched"] = statistics.median(batch_runs)
        out["chain.sr25519_verify_per_s"] = sr25519_verify_per_s()
        out["chain.redis_lua_per_s"] = await redis_lua_per_s(redis.url)
        out["chain.transfer_tps_over_verify"] = out["chain.transfer_tps"] / out["chain.sr25519_verify_per_s"]
        out["chain.transfer_tps_over_redis_lua"] = out["chain.transfer_tps"] / out["chain.redis_lua_per_s"]
        out["chain.transfers_per_run"] = float(SENDERS * PER_SENDER)
    finally:
        proc.terminate()
        proc.wait(10)
        redis.stop()
    return out
