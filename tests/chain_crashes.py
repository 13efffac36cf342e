"""Crash scenarios on real processes, each under a transfer load whose every submission is
accounted for afterwards: SIGKILL of the block producer (at random times and inside a block),
fail-over to a standby producer on the same Redis, SIGKILL of Redis itself (append-only file on).

Chain nodes run as deployed (tests/chain_process.py). Each scenario returns a CrashReport:
tests/test_reliability_crash.py asserts on it, bench/reliability_chain.py counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from agora.chain.v1 import chain_pb2
from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.codec import extrinsic_hash
from services.chain.extrinsics import decode_queued
from services.chain.ledger import Ledger
from services.chain.ledger.digest import key_digests
from services.chain.replay import replay
from services.chain.settings import DEFAULT_TRANSFER_FEE_RAO, DEV_BALANCE_RAO
from services.common.redis_server import RedisServer
from tests.chain_process import OWNER, OWNER_HOTKEY, SENDERS, TAO, ChainProcess, Sent, TransferLoad, open_subnet

LEASE_S = 1.5            # the CLI's lease: max(1.5 s, three block times)
# a standby sees the lease lapse at most LEASE_S after the dead producer's last renewal and polls
# every LEASE_S / 3; the rest is slack for a loaded machine
TAKEOVER_LIMIT_S = LEASE_S + LEASE_S / 3 + 1.0
RECOVERY_TIMEOUT_S = 60.0
INCLUSION_WAIT_MS = 20_000   # a node that stopped following blocks answers only when this runs out


@dataclass
class CrashReport:
    injected: int = 0
    survived: int = 0                  # the chain resumed from the same head, with nothing rewritten
    in_block: int = 0                  # producer kills that left a half-built block for the next producer
    takeover_seconds: list[float] = field(default_factory=list)
    transfers: Counter[str] = field(default_factory=Counter)
    tokens_lost_rao: int = 0           # sum of every balance's distance from what the accounting expects
    problems: list[str] = field(default_factory=list)


# ---- checks ----


@dataclass(frozen=True, slots=True)
class KillState:
    head: tuple[int, bytes]
    pending: int | None                # number of the block being built, if any
    pending_hashes: list[bytes]        # its extrinsics


async def kill_state(ledger: Ledger) -> KillState:
    # the dead process may have sent commands Redis has not run yet: let them land first
    await asyncio.sleep(0.2)
    number = await ledger.redis.hget(ledger.keys.pending, "number")
    raws = await ledger.redis.lrange(ledger.keys.pending_xts, 0, -1)
    return KillState(head=await ledger.head(), pending=None if number is None else int(number),
                     pending_hashes=[decode_queued(r).hash for r in raws])


async def until_pending_block(ledger: Ledger, timeout: float = 5.0) -> None:
    """Return as soon as a block is being built (so a kill now lands inside it)."""
    deadline = time.monotonic() + timeout
    while not await ledger.redis.exists(ledger.keys.pending) and time.monotonic() < deadline:
        pass


async def resumed(ledger: Ledger, state: KillState, *, timeout: float = RECOVERY_TIMEOUT_S) -> list[str]:
    """Wait for a block past the head at the kill; check nothing before it was rewritten and a
    half-built block was finished with exactly the extrinsics it had."""
    deadline = time.monotonic() + timeout
    number, head_hash = state.head
    while (await ledger.head())[0] <= number:
        if time.monotonic() > deadline:
            return [f"no block after {number} within {timeout}s of the crash"]
        await asyncio.sleep(0.05)
    problems = []
    stored = chain_pb2.Block.FromString(await ledger.block_bytes(number) or b"")
    if stored.header.hash != head_hash:
        problems.append(f"block {number} was rewritten after the crash")
    if state.pending is not None:
        if state.pending != number + 1:
            problems.append(f"pending block {state.pending} does not follow head {number}")
        block = chain_pb2.Block.FromString(await ledger.block_bytes(state.pending) or b"")
        got = [extrinsic_hash(x.payload, x.signature) for x in block.extrinsics]
        if got != state.pending_hashes:
            problems.append(f"block {state.pending} was begun with {len(state.pending_hashes)} extrinsics and "
                            f"sealed with {len(got)} others")
    return problems


async def wait_until_final(ledger: Ledger, sent: list[Sent], timeout: float = RECOVERY_TIMEOUT_S) -> None:
    """Until no transfer that may have been queued is still waiting in the pool."""
    deadline = time.monotonic() + timeout
    waiting = [s for s in sent if s.outcome != "refused"]
    while waiting:
        statuses = [await ledger.extrinsic_status(s.hash) for s in waiting]
        waiting = [s for s, st in zip(waiting, statuses, strict=True) if st == "q"]
        if waiting and time.monotonic() > deadline:
            raise AssertionError(f"{len(waiting)} transfers still queued {timeout}s after the load stopped")
        await asyncio.sleep(0.1)


async def audit_transfers(ledger: Ledger, load: TransferLoad, report: CrashReport) -> None:
    """Account for every attempted transfer against every stored block: an acknowledged one is in
    exactly one block and succeeded, an unknown one in at most one, a refused one in none, and the
    blocks chain by parent hash; each recipient holds exactly what its included transfers sent,
    each sender its genesis balance less those and their fees; the ledger's invariants hold."""
    problems = report.problems
    head, _ = await ledger.head()
    senders = {k.ss58_address for k in SENDERS}
    where: dict[bytes, list[int]] = {}
    succeeded: set[bytes] = set()
    parent = chain_pb2.Block.FromString(await ledger.block_bytes(0) or b"").header.hash
    for number in range(1, head + 1):
        block = chain_pb2.Block.FromString(await ledger.block_bytes(number) or b"")
        if block.header.number != number or block.header.parent_hash != parent:
            problems.append(f"block {number} is missing or does not follow block {number - 1}")
        parent = block.header.hash
        ok = {e.extrinsic_index for e in block.events if e.name == "ExtrinsicSuccess"}
        for index, xt in enumerate(block.extrinsics):
            if chain_pb2.ExtrinsicPayload.FromString(xt.payload).signer in senders:
                h = extrinsic_hash(xt.payload, xt.signature)
                where.setdefault(h, []).append(number)
                if index in ok:
                    succeeded.add(h)
    problems += [f"transfer {h.hex()[:16]} is in blocks {n}" for h, n in where.items() if len(n) > 1]
    received: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    for s in load.sent:
        report.transfers[s.outcome] += 1
        blocks = where.pop(s.hash, [])
        if s.outcome == "queued" and (len(blocks) != 1 or s.hash not in succeeded):
            problems.append(f"acknowledged transfer {s.hash.hex()[:16]} is in blocks {blocks}, status "
                            f"{await ledger.extrinsic_status(s.hash)}")
        if s.outcome == "refused" and blocks:
            problems.append(f"refused transfer {s.hash.hex()[:16]} is in blocks {blocks}")
        if blocks:
            report.transfers["included"] += 1
            spent[s.sender] += DEFAULT_TRANSFER_FEE_RAO
            if s.hash in succeeded:
                spent[s.sender] += s.amount
                received[s.dest] += s.amount
    if where:
        problems.append(f"{len(where)} transfers in blocks that no sender sent")
    balances = await ledger.all_balances()
    expected = {r.ss58_address: received[r.ss58_address] for r in load.recipients}
    expected |= {k.ss58_address: DEV_BALANCE_RAO - spent[k.ss58_address] for k in SENDERS}
    for address, want in expected.items():
        have = balances.get(address, 0)
        report.tokens_lost_rao += abs(want - have)
        if have != want:
            problems.append(f"{address} holds {have} rao, the accounting says {want}")
    e = await ledger.economy()
    report.tokens_lost_rao += abs(e.issuance - (sum(balances.values()) + e.total_stake + e.locked + e.pending_emission))
    problems += await ledger.check_invariants()


async def replays_to_same_state(ledger: Ledger) -> list[str]:
    """Replay the network's blocks on a fresh prefix of the same Redis; compare the state digests:
    a crashed and resumed chain must equal a clean re-execution of its own blocks."""
    target = Ledger(ledger.redis, f"{ledger.network}-replay")
    try:
        await replay(ledger, target)
        live, replayed = await key_digests(ledger.redis, ledger.keys), await key_digests(target.redis, target.keys)
        differ = sorted(k for k in live.keys() | replayed.keys() if live.get(k) != replayed.get(k))
        if not differ:
            return []
        shown = [f"{k} ({'live only' if k not in replayed else 'replay only' if k not in live else 'differs'})"
                 for k in differ[:8]]
        return [f"replaying the blocks on a fresh prefix reached a different state: {', '.join(shown)}"]
    except Exception as exc:  # ReplayDiverged names the first block that differs
        return [f"replay failed: {exc!r}"]
    finally:
        stale = [k async for k in target.redis.scan_iter(match=f"{target.keys.prefix}:*", count=1000)]
        if stale:
            await target.redis.unlink(*stale)


async def _settle(ledger: Ledger, load: TransferLoad, task: asyncio.Task, report: CrashReport,
                  nodes: list[ChainProcess]) -> None:
    """Stop the load, let the pool drain, stop the nodes (so the state holds still), then account
    for everything and replay the chain."""
    load.stopping.set()
    await task
    await wait_until_final(ledger, load.sent)
    for node in nodes:
        node.stop()
    await audit_transfers(ledger, load, report)
    report.problems += await replays_to_same_state(ledger)


async def _cancel(tasks: list[asyncio.Task]) -> None:
    """Stop what a failed scenario left running: the tests share one event loop."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---- scenarios ----


async def producer_kills(redis_url: str, workdir: Path, *, rounds: int, seed: int) -> CrashReport:
    """SIGKILL the only node `rounds` times: at a random moment, or (every other round) as soon
    as a block is being built; restart it each time. Rounds continue (a few at most) until one
    kill has landed inside a block."""
    rng, report = random.Random(seed), CrashReport()
    node = ChainProcess(redis_url, f"crash-{uuid.uuid4().hex[:8]}", workdir / "producer-kills.log").start()
    redis = aioredis.from_url(redis_url)
    ledger = Ledger(redis, node.network)
    tasks: list[asyncio.Task] = []
    try:
        await node.wait_serving()
        load = TransferLoad(await open_subnet(node.target), [node.target], seed=seed, tag=node.network)
        tasks.append(task := asyncio.create_task(load.run()))
        while report.injected < rounds or (report.in_block == 0 and report.injected < rounds + 6):
            await asyncio.sleep(rng.uniform(0.2, 0.8))
            if report.injected % 2 or report.injected >= rounds:
                await until_pending_block(ledger)
            node.kill()
            report.injected += 1
            state = await kill_state(ledger)
            report.in_block += state.pending is not None
            node.start()
            problems = await resumed(ledger, state)
            report.problems += problems
            report.survived += not problems
        await _settle(ledger, load, task, report, [node])
    finally:
        await _cancel(tasks)
        node.stop()
        await redis.aclose()
    return report


async def standby_takeovers(redis_url: str, workdir: Path, *, rounds: int, seed: int) -> CrashReport:
    """Two nodes on one Redis, the load spread over both: SIGKILL whichever produces; the other
    must be producing within TAKEOVER_LIMIT_S. The killed one comes back as the standby."""
    rng, report = random.Random(seed), CrashReport()
    network = f"standby-{uuid.uuid4().hex[:8]}"
    nodes = [ChainProcess(redis_url, network, workdir / f"standby-{i}.log") for i in range(2)]
    redis = aioredis.from_url(redis_url)
    ledger = Ledger(redis, network)
    tasks: list[asyncio.Task] = []
    try:
        await nodes[0].start().wait_serving()
        chain_id = await open_subnet(nodes[0].target)
        await nodes[1].start().wait_serving()
        load = TransferLoad(chain_id, [n.target for n in nodes], seed=seed, tag=network)
        tasks.append(task := asyncio.create_task(load.run()))
        for _ in range(rounds):
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            holder = await ledger.lease_holder()
            active = next((n for n in nodes if n.holds(holder)), None)
            if active is None:
                report.problems.append(f"the lease is held by {holder!r}, neither node")
                break
            standby = nodes[1 - nodes.index(active)]
            active.kill()
            killed = time.monotonic()
            report.injected += 1
            state = await kill_state(ledger)
            while not standby.holds(await ledger.lease_holder()) and time.monotonic() - killed < RECOVERY_TIMEOUT_S:
                await asyncio.sleep(0.01)
            problems = await resumed(ledger, state)
            took = time.monotonic() - killed
            report.takeover_seconds.append(took)
            if not standby.holds(await ledger.lease_holder()):
                problems.append("the standby did not take the lease")
            elif took > TAKEOVER_LIMIT_S:
                problems.append(f"the standby took {took:.2f}s to take over, more than {TAKEOVER_LIMIT_S:.2f}s")
            report.problems += problems
            report.survived += not problems
            await active.start().wait_serving()
        await _settle(ledger, load, task, report, nodes)
    finally:
        await _cancel(tasks)
        for n in nodes:
            n.stop()
        await redis.aclose()
    return report


async def redis_kills(workdir: Path, *, rounds: int, seed: int) -> CrashReport:
    """SIGKILL Redis (append-only, fsync always) under load, every other round together with the
    node; restart both. Every block a client saw finalized must still be there with the same
    hash, and the node must finalize new blocks and answer wait-for-inclusion again."""
    rng, report = random.Random(seed), CrashReport()
    server = RedisServer(data_dir=workdir / "redis-aof", appendonly=True, appendfsync="always").start()
    node = ChainProcess(server.url, f"aof-{uuid.uuid4().hex[:8]}", workdir / "redis-kills.log")
    redis = aioredis.from_url(server.url)
    ledger = Ledger(redis, node.network)
    seen: dict[int, bytes] = {}
    stop_watching = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def watch() -> None:
        """What clients see finalized: the head the node reports."""
        async with ChainClient(node.target, timeout=1.0) as client:
            while not stop_watching.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    info = await client.info()
                    seen[info.head_number] = info.head_hash
                await asyncio.sleep(0.02)

    try:
        await node.start().wait_serving()
        load = TransferLoad(await open_subnet(node.target), [node.target], seed=seed, tag=node.network)
        tasks += [asyncio.create_task(load.run()), asyncio.create_task(watch())]
        for round_ in range(rounds):
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            server.kill()
            report.injected += 1
            if round_ % 2:
                node.kill()
                report.injected += 1
            finalized = dict(seen)
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            server = RedisServer(data_dir=server.data_dir, port=server.port, appendonly=True,
                                 appendfsync="always").start()
            await redis.aclose()  # its connections died with the server
            redis = aioredis.from_url(server.url)
            ledger = Ledger(redis, node.network)
            if round_ % 2:
                await node.start().wait_serving()
            problems = await _kept(ledger, finalized)
            if not problems:
                problems += await _inclusion_is_awaited(node.target)
            report.problems += problems
            report.survived += (1 + round_ % 2) if not problems else 0
        stop_watching.set()
        await tasks[1]
        await _settle(ledger, load, tasks[0], report, [node])
    finally:
        await _cancel(tasks)
        node.stop()
        await redis.aclose()
        server.stop()
    return report


async def _inclusion_is_awaited(target: str) -> list[str]:
    """A submission waiting for inclusion is answered when its block comes, not at its timeout:
    the node's block follower survived the Redis restart."""
    async with ChainClient(target, timeout=5.0) as client:
        xt = await client.sign(OWNER, calls.transfer_call(OWNER_HOTKEY.ss58_address, TAO))
        started = time.monotonic()
        status = (await client.submit(xt, wait=True, timeout_ms=INCLUSION_WAIT_MS)).status
        took = time.monotonic() - started
    if status.state != chain_pb2.ExtrinsicStatus.INCLUDED or took > INCLUSION_WAIT_MS / 2000:
        return [f"after the restart, waiting for inclusion took {took:.1f}s and ended {status}"]
    return []


async def _kept(ledger: Ledger, finalized: dict[int, bytes]) -> list[str]:
    """Every block seen finalized before the crash is stored with the same hash, and the chain
    moves past the last of them."""
    problems = []
    for number, block_hash in sorted(finalized.items()):
        raw = await ledger.block_bytes(number)
        if raw is None or chain_pb2.Block.FromString(raw).header.hash != block_hash:
            problems.append(f"block {number}, seen finalized before Redis died, is {'changed' if raw else 'lost'}")
    last = max(finalized, default=0)
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while (await ledger.head())[0] <= last:
        if time.monotonic() > deadline:
            return [*problems, f"no block after {last} within {RECOVERY_TIMEOUT_S}s of the restart"]
        await asyncio.sleep(0.05)
    return problems
