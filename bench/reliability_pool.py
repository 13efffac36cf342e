"""reliability.pool.*: the extrinsic pool under depth and under an attacker's flood (issue 12).

- Depth: 20,000 funded transfers from 20 signers queued at once (past the ~8,000 values Lua's
  unpack takes, which lost a whole batch before), then blocks until the pool is empty: how many were
  applied exactly once (all of them, or the run says how many were lost).
- Flood: a real chain process (`agora chain start`, 100 ms blocks); four honest signers each send a
  transfer and wait for its inclusion, in a loop, first alone, then while 16 attacker accounts
  offer 40,000 transfers signed beforehand, in batches of 250, as fast as the chain answers; then
  again against blocks of at most 40 extrinsics, which the flood outruns. Figures: the attacker's
  acknowledged rate and what it paid for it (fees burned), how much of its flood was refused,
  and honest inclusion latency p50/p99 with and without the flood, as a ratio from the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc

from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from services.chain import client as calls
from services.chain.client import ChainClient, sign_extrinsic
from services.chain.codec import extrinsic_hash
from services.chain.local import LocalChain
from services.chain.settings import ChainSettings, dev_balances
from services.common.keys import dev_keypair
from services.common.redis_server import temporary_redis
from tests.chain_process import ChainProcess

TAO = 10**9
DEPTH_SIGNERS, DEPTH_PER_SIGNER = 20, 1000
ATTACKERS, ATTACK_BATCH, ATTACK_SIGNED = 16, 250, 2_500
PHASE_SECONDS = 8.0
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


async def deepest_pool(redis_url: str) -> dict[str, float | int]:
    settings = ChainSettings(redis_url=redis_url, network=f"bench-pool-{uuid.uuid4().hex[:6]}",
                             genesis_balances=dev_balances())
    local = await LocalChain.create(settings)
    alice = dev_keypair("Alice")
    try:
        signers = [dev_keypair(f"bench/pool/depth/{i}") for i in range(DEPTH_SIGNERS)]
        for s in signers:
            await local.submit(alice, calls.transfer_call(s.ss58_address, 10 * TAO))
        await local.produce()
        hashes = [await local.submit(s, calls.transfer_call(alice.ss58_address, 1), nonce=n)
                  for s in signers for n in range(DEPTH_PER_SIGNER)]
        queued = (await local.ledger.totals())[2]
        started, blocks, seen = time.perf_counter(), 0, Counter[bytes]()
        while (await local.ledger.totals())[2] > 0:
            (block,) = await local.produce()
            blocks += 1
            seen.update(extrinsic_hash(x.payload, x.signature) for x in block.extrinsics)
        seconds = time.perf_counter() - started
        return {
            "reliability.pool.deepest_queued": queued,
            "reliability.pool.deepest_applied_once": sum(1 for h in hashes if seen[h] == 1),
            "reliability.pool.deepest_lost": sum(1 for h in hashes if seen[h] == 0),
            "reliability.pool.deepest_drain_blocks": blocks,
            "reliability.pool.deepest_drain_tps": round(queued / seconds, 1),
        }
    finally:
        await local.close()


async def _honest(target: str, chain_id: bytes, keys: list, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with ChainClient(target) as client:
        async def one(k) -> None:
            nonce = (await client.account(k.ss58_address)).pool_nonce
            while not stop.is_set():
                xt = sign_extrinsic(k, nonce, chain_id, calls.transfer_call(dev_keypair("Alice").ss58_address, 1))
                started = time.perf_counter()
                r = await client.submit(xt, wait=True, timeout_ms=30_000)
                if r.status.state == chain_pb2.ExtrinsicStatus.INCLUDED:
                    latencies.append(time.perf_counter() - started)
                nonce += 1
        await asyncio.gather(*(one(k) for k in keys))
    return latencies


def presign(keys: list, chain_id: bytes, count: int) -> dict[str, list[chain_pb2.Extrinsic]]:
    """Each attacker's next `count` transfers, signed before the flood so that it is limited by the
    chain, not by how fast this process signs."""
    bob = dev_keypair("Bob").ss58_address
    return {k.ss58_address: [sign_extrinsic(k, n, chain_id, calls.transfer_call(bob, 1)) for n in range(count)]
            for k in keys}


async def _attack(target: str, signed: dict[str, list[chain_pb2.Extrinsic]], stop: asyncio.Event) -> Counter[str]:
    """Each attacker in turn offers its next batch; a refused extrinsic is offered again next turn."""
    outcome: Counter[str] = Counter()
    channel = grpc.aio.insecure_channel(target)
    stub = chain_pb2_grpc.ChainStub(channel)
    cursor = dict.fromkeys(signed, 0)
    try:
        while not stop.is_set() and any(cursor[a] < len(xts) for a, xts in signed.items()):
            for address, xts in signed.items():
                if stop.is_set():
                    break
                batch = xts[cursor[address]:cursor[address] + ATTACK_BATCH]
                if not batch:
                    continue
                reply = await stub.SubmitExtrinsics(chain_pb2.SubmitExtrinsicsRequest(extrinsics=batch))
                acked = sum(1 for r in reply.results if r.code == 0)
                cursor[address] += acked
                outcome["acked"] += acked
                outcome["refused"] += len(reply.results) - acked
                outcome.update(f"code:{CODE_NAMES[r.code]}" for r in reply.results if r.code)
    finally:
        await channel.close()
    return outcome


async def flood(redis_url: str, workdir: Path, name: str, *flags: str) -> dict[str, float | int]:
    node = ChainProcess(redis_url, f"bench-{name}-{uuid.uuid4().hex[:6]}", workdir / f"{name}-chain.log")
    node.start(*flags)
    try:
        await node.wait_serving()
        async with ChainClient(node.target) as client:
            chain_id = await client.chain_id()
            fee = (await client.info()).transfer_fee
            honest = [dev_keypair(name) for name in ("Charlie", "Dave", "Eve", "Ferdie")]
            attackers = [dev_keypair(f"bench/pool/attacker/{i}") for i in range(ATTACKERS)]
            alice = dev_keypair("Alice")
            for a in attackers:
                await client.transfer(alice, a.ss58_address, 100 * TAO, wait=False)
            await client.transfer(alice, dev_keypair("Bob").ss58_address, 1, wait=True)
            before = {a.ss58_address: (await client.account(a.ss58_address)).free for a in attackers}

            stop = asyncio.Event()
            quiet_task = asyncio.create_task(_honest(node.target, chain_id, honest, stop))
            await asyncio.sleep(PHASE_SECONDS)
            stop.set()
            quiet = await quiet_task

            signed = presign(attackers, chain_id, ATTACK_SIGNED)
            stop = asyncio.Event()
            attack_task = asyncio.create_task(_attack(node.target, signed, stop))
            await asyncio.sleep(1.0)   # let the flood fill the pool first
            busy_task = asyncio.create_task(_honest(node.target, chain_id, honest, stop))
            flood_started = time.perf_counter()
            await asyncio.sleep(PHASE_SECONDS)
            stop.set()
            busy, attack = await busy_task, await attack_task
            flood_seconds = time.perf_counter() - flood_started + 1.0
            deadline = time.monotonic() + 120   # let the pool drain before reading what the attackers paid
            while (await client.info()).pool_size and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            paid = 0
            for a in attackers:
                paid += before[a.ss58_address] - (await client.account(a.ss58_address)).free
    finally:
        with contextlib.suppress(Exception):
            node.stop()

    def pct(xs: list[float], q: float) -> float:
        return round(statistics.quantiles(xs, n=100)[q - 1], 4) if len(xs) >= 2 else float("nan")

    offered = attack["acked"] + attack["refused"]
    figures = {
        "reliability.pool.flood_offered_per_s": round(offered / flood_seconds, 1),
        "reliability.pool.flood_acked_per_s": round(attack["acked"] / flood_seconds, 1),
        "reliability.pool.flood_refused_share": round(attack["refused"] / max(1, offered), 4),
        "reliability.pool.flood_refusal_codes": {k[5:]: v for k, v in attack.items() if k.startswith("code:")},
        "reliability.pool.flood_cost_rao_per_s": round(paid / flood_seconds),
        "reliability.pool.flood_cost_rao_per_acked": round(paid / max(1, attack["acked"])),
        "reliability.pool.transfer_fee_rao": fee,
        "reliability.pool.honest_p50_s_quiet": pct(quiet, 50),
        "reliability.pool.honest_p99_s_quiet": pct(quiet, 99),
        "reliability.pool.honest_p50_s_flood": pct(busy, 50),
        "reliability.pool.honest_p99_s_flood": pct(busy, 99),
        "reliability.pool.honest_included_quiet": len(quiet),
        "reliability.pool.honest_included_flood": len(busy),
        "reliability.pool.honest_p50_flood_over_quiet": round(pct(busy, 50) / pct(quiet, 50), 2),
        "reliability.pool.honest_p99_flood_over_quiet": round(pct(busy, 99) / pct(quiet, 99), 2),
    }
    return {key.replace("reliability.pool.", f"reliability.pool.{name}."): value for key, value in figures.items()}


async def measure() -> dict[str, float | int]:
    redis = temporary_redis().start()
    workdir = Path(tempfile.mkdtemp(prefix="agora-bench-pool-"))
    try:
        return (await deepest_pool(redis.url)
                | await flood(redis.url, workdir, "flood")
                # blocks of at most 40 extrinsics (400 a second): the flood outruns the chain and
                # fills the pool, so the per-signer limits and the fair order are what honest users meet
                | await flood(redis.url, workdir, "flood_saturated", "--max-block-extrinsics", "40"))
    finally:
        redis.stop()


def run() -> dict[str, float | int]:
    return asyncio.run(measure())


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
