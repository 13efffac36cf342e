"""MetagraphCache: who may call this miner, from its subnet's metagraph, kept fresh from the block stream.

    cache = MetagraphCache(client, netuid=1, always={miner_hotkey: 0})
    await cache.refresh()          # the first read (the miner checks its registration with it)
    cache.start()                  # follow SubscribeBlocks from the block after that read
    cache.stake_of(hotkey)         # -> rao, or None (refused with PERMISSION_DENIED): one dict get

Who is permitted mirrors the chain's own rule for set_weights (services/chain/scripts/set_weights.lua):
once any uid of the subnet holds a validator permit, only permit holders; while none does (before
the subnet's first epoch, or after an epoch that found no stake), every registered hotkey with
stake. One addition: a caller must hold stake now. Permits are recomputed only at epochs, so a
validator that unstaked would otherwise keep calling until the next one; the miner refuses it from
the next refresh on. The stake returned orders the miner's queue.

Refreshes (GetMetagraph without weights or bonds, one RPC) happen at most once per block: when a
block carries an event that can change the answer (this subnet's EpochRun, NeuronRegistered,
HyperparameterSet, AxonServed; StakeAdded/StakeRemoved on one of its hotkeys), and every
`refresh_blocks` blocks regardless. A block at or below the block of the last read is skipped,
so a burst of events costs one read. If the chain goes away the last metagraph stays in force and
the stream is resumed from where it stopped, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient
from services.miner import metrics

log = logging.getLogger("agora.miner.metagraph")

DEFAULT_REFRESH_BLOCKS = 10
# Events that can change who is permitted (or where this subnet's axons are), by the subnet they name.
SUBNET_EVENTS = frozenset({"EpochRun", "NeuronRegistered", "HyperparameterSet", "AxonServed", "NetworkRegistered"})
# Events that name a hotkey, not a subnet: relevant when the hotkey is one of ours.
STAKE_EVENTS = frozenset({"StakeAdded", "StakeRemoved"})

OnRefresh = Callable[[chain_pb2.Metagraph], "Awaitable[None] | None"]


def permitted_stakes(metagraph: chain_pb2.Metagraph) -> dict[str, int]:
    """hotkey -> stake (rao) of every hotkey that may call a miner of this subnet (see the module doc)."""
    neurons = metagraph.neurons
    any_permit = any(n.validator_permit for n in neurons)
    return {n.hotkey: n.stake for n in neurons if n.stake > 0 and (n.validator_permit or not any_permit)}


class MetagraphCache:
    """The permitted callers of one subnet. `always` adds hotkeys permitted whatever the chain says
    (the miner's own, so its operator can check it with `agora miner info`), with their queue priority."""

    def __init__(
        self,
        client: ChainClient,
        netuid: int,
        *,
        refresh_blocks: int = DEFAULT_REFRESH_BLOCKS,
        always: Mapping[str, int] | None = None,
        on_refresh: OnRefresh | None = None,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        if refresh_blocks < 1:
            raise ValueError(f"refresh_blocks must be >= 1, got {refresh_blocks}")
        self.client = client
        self.netuid = netuid
        self.refresh_blocks = refresh_blocks
        self.always = dict(always or {})
        self.on_refresh = on_refresh
        self.max_backoff_seconds = max_backoff_seconds
        self.metagraph: chain_pb2.Metagraph | None = None
        self.block = 0                  # the chain head when the metagraph was read
        self.last_seen_block = 0        # the last block the stream delivered
        self.refreshes = 0
        self.refreshed_at = 0.0         # time.time() of the last successful read
        self._stakes: dict[str, int] = dict(self.always)
        self._uids: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # ---- lookups (no I/O) ----

    def stake_of(self, hotkey: str) -> int | None:
        """The caller's stake in rao if it may call this miner, else None."""
        return self._stakes.get(hotkey)

    def uid_of(self, hotkey: str) -> int | None:
        """The hotkey's uid on the subnet, or None if it is not registered there."""
        return self._uids.get(hotkey)

    def neuron(self, hotkey: str) -> chain_pb2.Neuron | None:
        uid = self._uids.get(hotkey)
        return None if uid is None or self.metagraph is None else self.metagraph.neurons[uid]

    @property
    def permitted(self) -> dict[str, int]:
        return dict(self._stakes)

    # ---- reading the chain ----

    async def refresh(self) -> chain_pb2.Metagraph:
        """Read the metagraph now and swap the lookup tables in one step."""
        async with self._lock:
            try:
                m = await self.client.metagraph(self.netuid)
            except Exception:
                metrics.metagraph_refreshes.labels("error").inc()
                raise
            validators = permitted_stakes(m)
            stakes = {**self.always, **validators}
            self._uids = {n.hotkey: n.uid for n in m.neurons}
            self._stakes = stakes   # one assignment: a concurrent lookup sees the old table or the new
            self.metagraph, self.block = m, max(self.block, m.block)
            self.refreshes += 1
            self.refreshed_at = time.time()
        metrics.metagraph_refreshes.labels("ok").inc()
        metrics.metagraph_block.set(m.block)
        metrics.permitted_validators.set(len(validators))
        if self.on_refresh is not None:
            try:
                result = self.on_refresh(m)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("metagraph refresh hook failed")
        return m

    def needs_refresh(self, block: chain_pb2.Block) -> bool:
        """True when `block` may change the answer (or the periodic refresh is due) and the last
        read predates it."""
        number = block.header.number
        if number <= self.block:
            return False
        if number - self.block >= self.refresh_blocks:
            return True
        netuid = str(self.netuid)
        for event in block.events:
            if event.name in SUBNET_EVENTS and event.attributes.get("netuid") == netuid:
                return True
            if event.name in STAKE_EVENTS and event.attributes.get("hotkey") in self._uids:
                return True
        return False

    # ---- following the block stream ----

    def start(self) -> None:
        """Follow the chain in the background (after a first `refresh()`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="miner-metagraph")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        backoff = 1.0
        while True:
            try:
                start = max(self.block, self.last_seen_block) + 1
                async for block in self.client.blocks(start):
                    if self.needs_refresh(block):
                        await self.refresh()
                    self.last_seen_block = block.header.number
                    backoff = 1.0
                # the server ended the stream (a restart): resubscribe at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("metagraph of subnet %d: lost the chain (%s); keeping the metagraph of block %d, "
                            "retrying in %.0f s", self.netuid, _short(exc), self.block, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_seconds)
                with contextlib.suppress(Exception):
                    await self.refresh()   # blocks may have gone by: catch up before resuming


def _short(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        return f"{exc.code().name}: {details()}"   # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"
