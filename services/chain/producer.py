"""The block producer: one per network, chosen by a lease in Redis.

Each block: take the next batch from the pool into the pending block (or resume the pending block
a crashed producer left), apply each extrinsic with its own atomic script (journaled, so never
twice), then the block-level steps: the coinbase, then the epoch of each subnet due at this block
(each journaled in the pending block too), then seal the block with one script. Every write is
fenced by the lease token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from agora.chain.v1 import chain_pb2
from services.chain import metrics
from services.chain.codec import event_bytes, header_hash, merkle_root
from services.chain.coinbase import plan_coinbase
from services.chain.epoch import run_epoch
from services.chain.extrinsics import CheckedExtrinsic, decode_queued, extrinsic_fee
from services.chain.ledger import ApplyResult, Ledger, NotLeader, epoch_step
from services.chain.pool import BlockLimits
from services.chain.subnets import ROOT_NETUID, is_epoch_block
from services.common.errors import REDIS_UNREACHABLE
from services.common.grpc_server import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SealedBlock:
    block: chain_pb2.Block
    statuses: list[tuple[bytes, str]]


def build_block(
    number: int, parent_hash: bytes, timestamp_ms: int,
    extrinsics: list[CheckedExtrinsic], results: list[ApplyResult], fees: list[int],
    block_events: list[list[str]] | None = None,
) -> SealedBlock:
    """Pure: the block, its hashes and each extrinsic's status, from the applied results; the
    block-level events (coinbase, epochs) follow the extrinsics' and carry no extrinsic index."""
    block = chain_pb2.Block()
    statuses: list[tuple[bytes, str]] = []
    for xt, result, fee in zip(extrinsics, results, fees, strict=True):
        if not result.applied:
            statuses.append((xt.hash, json.dumps({"s": "dropped", "error": result.error})))
            continue
        index = len(block.extrinsics)
        block.extrinsics.append(chain_pb2.Extrinsic.FromString(xt.raw))
        for name, *pairs in result.events:
            event = block.events.add(extrinsic_index=index, name=name)
            event.attributes.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
        statuses.append((xt.hash, json.dumps(
            {"s": "included", "block": number, "index": index, "ok": result.ok, "error": result.error, "fee": fee}
        )))
    for name, *pairs in block_events or []:
        event = block.events.add(name=name)
        event.attributes.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
    header = block.header
    header.number = number
    header.parent_hash = parent_hash
    header.timestamp_ms = timestamp_ms
    header.extrinsics_root = merkle_root([xt.hash for xt, r in zip(extrinsics, results, strict=True) if r.applied])
    header.events_root = merkle_root([event_bytes(e) for e in block.events])
    header.hash = header_hash(header)
    return SealedBlock(block=block, statuses=statuses)


def events_json(block: chain_pb2.Block) -> str:
    return json.dumps([
        {"index": e.extrinsic_index if e.HasField("extrinsic_index") else None, "name": e.name,
         "attributes": dict(e.attributes)}
        for e in block.events
    ])


class BlockProducer:
    def __init__(self, ledger: Ledger, *, producer_id: str, block_time_ms: int, lease_ms: int,
                 limits: BlockLimits, transfer_fee: int) -> None:
        self.ledger = ledger
        self.token = f"{producer_id}:{uuid.uuid4().hex[:8]}"
        self.block_time = block_time_ms / 1000
        self.lease_ms = lease_ms
        self.limits = limits
        self.fee = transfer_fee
        self.is_leader = False
        self.stopping = False

    async def run(self) -> None:
        """Produce blocks while holding the lease; stand by while another process holds it."""
        next_due = time.monotonic()
        # a flag as well as cancellation: redis-py can turn a CancelledError that lands inside a
        # command into a ConnectionError, which the retry below would otherwise swallow
        while not self.stopping:
            try:
                leader = await self.ledger.hold_lease(self.token, self.lease_ms)
                if leader != self.is_leader:
                    log.info("block producer %s is now %s", self.token, "active" if leader else "standby")
                    self.is_leader = leader
                metrics.producer_active.set(1 if leader else 0)
                if not leader:
                    await asyncio.sleep(self.lease_ms / 3000)
                    next_due = time.monotonic()
                    continue
                await asyncio.sleep(max(0.0, next_due - time.monotonic()))
                next_due = max(next_due + self.block_time, time.monotonic())
                await self.produce_block()
            except NotLeader:
                log.warning("block producer %s lost its lease mid-block; standing by", self.token)
                self.is_leader = False
            except REDIS_UNREACHABLE as exc:
                log.warning("block producer cannot reach Redis (%s); retrying", exc)
                await asyncio.sleep(min(1.0, self.block_time))
            except Exception:
                # a bug in a block step: the pending block stays journaled and is retried, so the
                # chain stalls loudly instead of skipping a step or losing the producer task
                log.exception("block producer %s failed to produce a block; retrying", self.token)
                await asyncio.sleep(max(1.0, self.block_time))

    async def release(self) -> None:
        """Hand the lease back on a clean stop. A crash skips this and the lease simply lapses."""
        with contextlib.suppress(ConnectionError, OSError):
            await self.ledger.release_lease(self.token)
        self.is_leader = False

    async def produce_block(self, now_ms: int | None = None) -> chain_pb2.Block:
        """Produce the next block. now_ms: its timestamp (default the clock; replay passes the
        recorded one). A resumed pending block keeps the timestamp it was begun with."""
        started = time.perf_counter()
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        pending = await self.ledger.begin_block(self.token, self.limits, now_ms)
        extrinsics = [decode_queued(raw) for raw in pending.extrinsics]
        fees = [extrinsic_fee(xt.call_name, self.fee) for xt in extrinsics]
        done = await self.ledger.pending_results()     # non-empty only when resuming a crashed block
        todo = [(i, xt, fees[i]) for i, xt in enumerate(extrinsics) if i not in done]
        applied = await self.ledger.apply_extrinsics(self.token, todo, pending.number)
        for (i, _, _), result in zip(todo, applied, strict=True):
            done[i] = result
        results = [done[i] for i in range(len(extrinsics))]
        block_events = await self.block_steps(pending.number)
        _, parent_hash = await self.ledger.head()
        sealed = build_block(pending.number, parent_hash, pending.started_ms, extrinsics, results, fees,
                             block_events)
        raw = sealed.block.SerializeToString()
        if len(raw) > DEFAULT_MAX_MESSAGE_BYTES:  # the limits make this impossible; say so loudly if not
            log.error("block %d is %d bytes, more than GetBlock can send (%d)", pending.number, len(raw),
                      DEFAULT_MAX_MESSAGE_BYTES)
        await self.ledger.finalize_block(
            self.token, pending.number, sealed.block.header.hash, raw, events_json(sealed.block), sealed.statuses,
        )
        metrics.observe_block(sealed.block, extrinsics, results, time.perf_counter() - started, len(raw))
        return sealed.block

    async def block_steps(self, number: int) -> list[list[str]]:
        """The coinbase, then each due subnet's epoch (ascending netuid); a step the journal holds
        (a crashed producer applied it) is skipped and its journaled events reused."""
        done = await self.ledger.block_steps_done()
        subnets = await self.ledger.subnet_states()
        coinbase = done.get("coinbase")
        if coinbase is None:
            issuance = (await self.ledger.economy()).issuance
            root = await self.ledger.subnet_snapshot(ROOT_NETUID, weights=True, bonds=False)
            coinbase = await self.ledger.apply_coinbase(self.token, plan_coinbase(number, issuance, subnets, root))
        events = list(coinbase.events)
        for name, *pairs in events:
            if name == "Emission":
                attributes = dict(zip(pairs[::2], pairs[1::2], strict=True))
                metrics.emission.labels(attributes["netuid"]).inc(int(attributes["amount"]))
        for subnet in subnets:
            if subnet.netuid == ROOT_NETUID or not is_epoch_block(number, subnet.netuid, subnet.hp.tempo):
                continue
            result = done.get(epoch_step(subnet.netuid))
            if result is None:
                started = time.perf_counter()
                result = await run_epoch(self.ledger, self.token, subnet.netuid, number)
                metrics.epoch_seconds.observe(time.perf_counter() - started)
            events += result.events
        return events
