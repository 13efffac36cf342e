"""Connections to the subnet's miners: one long-lived gRPC channel per endpoint, reused by every
round and query, closed when the endpoint leaves the metagraph; and each miner's signed client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bittensor_wallet import Keypair
from grpc import aio

from services.miner.client import MinerClient
from services.validator.subnet import Endpoint

# A miner that answers with more than this is refused by gRPC (64 x 1024-d embeddings fit easily).
MAX_RECEIVE_BYTES = 16 * 1024 * 1024


class MinerPool:
    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self._channels: dict[str, aio.Channel] = {}

    def client(self, endpoint: Endpoint) -> MinerClient:
        """A client signing for `endpoint.hotkey` over the endpoint's shared channel."""
        channel = self._channels.get(endpoint.target)
        if channel is None:
            channel = aio.insecure_channel(endpoint.target, options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                # a miner that went away is noticed at the next call, and a reconnect is tried soon
                ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 5_000),
            ])
            self._channels[endpoint.target] = channel
        return MinerClient(endpoint.target, self.keypair, endpoint.hotkey, channel=channel)

    async def keep(self, endpoints: Iterable[Endpoint]) -> None:
        """Close the channels of endpoints no longer served."""
        live = {e.target for e in endpoints}
        gone = [t for t in self._channels if t not in live]
        await asyncio.gather(*(self._channels.pop(t).close() for t in gone))

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels))
