"""LocalChain: a chain driven block by block in-process, for tests, benchmarks and scripts.

Extrinsics go through the same checks as gRPC submissions (check_extrinsic, then the ledger's
submit with its state checks); blocks are produced on demand by a real BlockProducer holding the
lease, so everything but the timer is the production path.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.client import sign_extrinsic
from services.chain.extrinsics import check_extrinsic
from services.chain.genesis import ensure_genesis
from services.chain.ledger import Ledger
from services.chain.pool import BlockLimits, PoolLimits
from services.chain.producer import BlockProducer
from services.chain.settings import ChainSettings
from services.chain.subnets import NetworkParams
from services.common.redis_client import redis_client

LEASE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a submitted extrinsic ended: included (ok or failed with error) or dropped."""

    state: str        # "included", "dropped" or "queued"
    ok: bool
    error: str
    block: int


class LocalChain:
    def __init__(self, ledger: Ledger, chain_id: bytes, fee: int, *, pool: PoolLimits | None = None,
                 block: BlockLimits | None = None) -> None:
        self.ledger = ledger
        self.chain_id = chain_id
        self.fee = fee
        self.pool = pool or PoolLimits()
        self.producer = BlockProducer(ledger, producer_id="local", block_time_ms=1, lease_ms=LEASE_MS,
                                      limits=block or BlockLimits(), transfer_fee=fee)
        self._nonces: dict[str, int] = {}
        self._owns_redis: aioredis.Redis | None = None

    @classmethod
    async def create(cls, settings: ChainSettings, *, pool: PoolLimits | None = None,
                     block: BlockLimits | None = None) -> LocalChain:
        """Genesis (if the network has none) on settings.redis_url; no gRPC server. The pool and
        block limits default to settings'."""
        redis = redis_client(settings.redis_url)
        ledger = Ledger(redis, settings.network)
        chain_id, config = await ensure_genesis(ledger, settings)
        ledger.params = NetworkParams.from_config(config)
        chain = cls(ledger, chain_id, int(config["transfer_fee"]), pool=pool or settings.pool,
                    block=block or settings.block)
        chain._owns_redis = redis
        return chain

    async def close(self) -> None:
        await self.ledger.release_lease(self.producer.token)
        if self._owns_redis is not None:
            await self._owns_redis.aclose()

    async def nonce(self, address: str) -> int:
        return (await self.ledger.account(address)).pool_nonce

    async def submit(self, keypair: Keypair, call: chain_pb2.Call, *, nonce: int | None = None,
                     precheck: bool = True, reserve: bool = True) -> bytes:
        """Sign and queue; raises the AgoraError a gRPC client would get as a status. precheck=False
        skips the call's state checks at submit, reserve=False the pool's reservation of its fee and
        amount (both to test the block-time checks, which admission makes unreachable)."""
        if nonce is None:
            nonce = await self.nonce(keypair.ss58_address)
        xt = check_extrinsic(sign_extrinsic(keypair, nonce, self.chain_id, call), self.chain_id, self.fee,
                             self.ledger.params)
        if not reserve:
            xt = dataclasses.replace(xt, upfront=0)
        await self.ledger.submit(xt, self.pool, precheck=precheck)
        return xt.hash

    async def produce(self, blocks: int = 1) -> list[chain_pb2.Block]:
        """Produce blocks now (taking the lease if it is free)."""
        if not await self.ledger.hold_lease(self.producer.token, LEASE_MS):
            raise RuntimeError("another producer holds the lease of this network")
        return [await self.producer.produce_block() for _ in range(blocks)]

    async def run(self, keypair: Keypair, call: chain_pb2.Call, **kwargs: object) -> Outcome:
        """Submit one call, produce a block, return its outcome."""
        xt_hash = await self.submit(keypair, call, **kwargs)  # type: ignore[arg-type]
        await self.produce()
        return await self.outcome(xt_hash)

    async def outcome(self, xt_hash: bytes) -> Outcome:
        raw = await self.ledger.extrinsic_status(xt_hash)
        if raw is None or raw == "q":
            return Outcome(state="queued", ok=False, error="", block=0)
        d = json.loads(raw)
        if d["s"] == "dropped":
            return Outcome(state="dropped", ok=False, error=d["error"], block=0)
        return Outcome(state="included", ok=d["ok"], error=d["error"], block=d["block"])

    async def head(self) -> int:
        return (await self.ledger.head())[0]
