"""Wiring of a chain process: Redis, genesis, the gRPC server, the block follower and producer."""

from __future__ import annotations

import asyncio
import logging

from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from services.chain.genesis import ensure_genesis
from services.chain.ledger import Ledger
from services.chain.producer import BlockProducer
from services.chain.server import BlockFollower, ChainService
from services.chain.settings import ChainSettings
from services.chain.subnets import NetworkParams
from services.common.grpc_server import AgoraServer
from services.common.redis_client import redis_client

log = logging.getLogger("agora.chain")
SERVICE = "agora.chain.v1.Chain"


class ChainNode:
    """One chain process. Every replica serves reads and submissions; the lease decides which one
    produces blocks."""

    def __init__(self, settings: ChainSettings) -> None:
        self.settings = settings
        self.redis = redis_client(settings.redis_url, max_connections=256)
        self.ledger = Ledger(self.redis, settings.network)
        self.server = AgoraServer(
            name="chain", host=settings.host, port=settings.port, metrics_port=settings.metrics_port
        )
        self.producer: BlockProducer | None = None
        self.follower: BlockFollower | None = None
        self.service: ChainService | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        chain_id, config = await ensure_genesis(self.ledger, self.settings)
        self.ledger.params = NetworkParams.from_config(config)
        self.follower = follower = BlockFollower(self.ledger)
        self.service = service = ChainService(
            self.ledger, follower, chain_id=chain_id, config=config,
            block_time_ms=self.settings.block_time_ms, pool=self.settings.pool,
        )
        self.server.add_service(
            chain_pb2_grpc.add_ChainServicer_to_server, service, chain_pb2.DESCRIPTOR.services_by_name["Chain"]
        )
        await self.server.start()
        self._tasks.append(asyncio.create_task(follower.run(), name="block-follower"))
        if self.settings.produce:
            self.producer = BlockProducer(
                self.ledger, producer_id=self.settings.producer_id, block_time_ms=self.settings.block_time_ms,
                lease_ms=self.settings.effective_lease_ms,
                limits=self.settings.block, transfer_fee=int(config["transfer_fee"]),
            )
            self._tasks.append(asyncio.create_task(self.producer.run(), name="block-producer"))
        self.server.set_serving(SERVICE, True)
        log.info("chain %s (genesis %s...) serving gRPC on %s:%d, metrics on :%d",
                 config["network"], chain_id.hex()[:16], self.settings.host, self.server.port,
                 self.server.metrics_port)

    async def stop(self) -> None:
        for worker in (self.producer, self.follower):
            if worker is not None:
                worker.stopping = True
        pending = set(self._tasks)
        while pending:  # cancel until done: a cancellation can be swallowed inside a Redis command
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        if self.producer is not None:
            await self.producer.release()
        await self.server.stop()
        await self.redis.aclose()

    async def run_until_signalled(self) -> None:
        await self.start()
        try:
            await self.server.wait_for_termination()
        finally:
            await self.stop()
