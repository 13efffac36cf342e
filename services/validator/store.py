"""Where the validator keeps its moving average: in memory, or in Redis (AGORA_REDIS_URL) so that a
restarted validator resumes its scores instead of starting every miner from zero."""

from __future__ import annotations

import json
import logging
from typing import Protocol

from services.validator.ema import EmaState

log = logging.getLogger("agora.validator")


class EmaStore(Protocol):
    async def load(self) -> EmaState | None: ...

    async def save(self, state: EmaState) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self.state: EmaState | None = None

    async def load(self) -> EmaState | None:
        return self.state

    async def save(self, state: EmaState) -> None:
        self.state = state

    async def close(self) -> None:
        pass


class RedisStore:
    """One JSON value per (validator hotkey, netuid): `agora:validator:<hotkey>:<netuid>:ema:v2`.
    v2: the average of score ** power (v1 averaged per-round shares; its values are not comparable)."""

    def __init__(self, url: str, hotkey: str, netuid: int) -> None:
        from services.common.redis_client import redis_client

        self.redis = redis_client(url)
        self.key = f"agora:validator:{hotkey}:{netuid}:ema:v2"

    async def load(self) -> EmaState | None:
        raw = await self.redis.get(self.key)
        if raw is None:
            return None
        try:
            return EmaState.from_dict(json.loads(raw))
        except ValueError as exc:   # a corrupt value must not stop the validator: start afresh
            log.warning("ignoring the saved moving average at %s: %s", self.key, exc)
            return None

    async def save(self, state: EmaState) -> None:
        await self.redis.set(self.key, json.dumps(state.to_dict()))

    async def close(self) -> None:
        await self.redis.aclose()


def open_store(redis_url: str | None, hotkey: str, netuid: int) -> EmaStore:
    return RedisStore(redis_url, hotkey, netuid) if redis_url else MemoryStore()
