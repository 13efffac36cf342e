"""Where the validator keeps its moving average and its unrevealed weight commits: in memory, or in
Redis (AGORA_REDIS_URL) so that a restarted validator resumes its scores instead of starting every
miner from zero, and still reveals what it committed (a lost salt is a lost tempo of weights)."""

from __future__ import annotations

import json
import logging
from typing import Protocol

from services.validator.commit_reveal import PendingCommit
from services.validator.ema import EmaState

log = logging.getLogger("agora.validator")


class EmaStore(Protocol):
    async def load(self) -> EmaState | None: ...

    async def save(self, state: EmaState) -> None: ...

    async def load_commits(self) -> list[PendingCommit]: ...

    async def save_commits(self, commits: list[PendingCommit]) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self.state: EmaState | None = None
        self.commits: list[PendingCommit] = []

    async def load(self) -> EmaState | None:
        return self.state

    async def save(self, state: EmaState) -> None:
        self.state = state

    async def load_commits(self) -> list[PendingCommit]:
        return list(self.commits)

    async def save_commits(self, commits: list[PendingCommit]) -> None:
        self.commits = list(commits)

    async def close(self) -> None:
        pass


class RedisStore:
    """JSON values per (validator hotkey, netuid): the average at `agora:validator:<hotkey>:<netuid>:ema:v3`
    (v3: of each round's level, scoring.round_level; v2 averaged score ** power and v1 per-round
    shares, neither comparable), the pending commits at `...:commits:v1`."""

    def __init__(self, url: str, hotkey: str, netuid: int) -> None:
        from services.common.redis_client import redis_client

        self.redis = redis_client(url)
        self.key = f"agora:validator:{hotkey}:{netuid}:ema:v3"
        self.commits_key = f"agora:validator:{hotkey}:{netuid}:commits:v1"

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

    async def load_commits(self) -> list[PendingCommit]:
        raw = await self.redis.get(self.commits_key)
        if raw is None:
            return []
        try:
            return [PendingCommit.from_dict(d) for d in json.loads(raw)]
        except (ValueError, TypeError) as exc:
            log.warning("ignoring the saved weight commits at %s: %s", self.commits_key, exc)
            return []

    async def save_commits(self, commits: list[PendingCommit]) -> None:
        await self.redis.set(self.commits_key, json.dumps([c.to_dict() for c in commits]))

    async def close(self) -> None:
        await self.redis.aclose()


def open_store(redis_url: str | None, hotkey: str, netuid: int) -> EmaStore:
    return RedisStore(redis_url, hotkey, netuid) if redis_url else MemoryStore()
