"""Routing a user's query: the best miner by the validator's moving average first, and on an error,
a malformed answer or a missed per-attempt deadline, the next one. A miner that failed is tried
last for a while (loop.DOWN_SECONDS), so one that went away stops costing every user a timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grpc import aio

from services.common.errors import Unavailable
from services.miner.client import MinerClient
from services.validator.loop import ValidatorLoop
from services.validator.miners import MinerPool
from services.validator.subnet import Endpoint


class NoMinerAnswered(Unavailable):
    """Every miner tried failed or was too slow."""


class NoMinerServing(Unavailable):
    """The subnet has no miner with an endpoint."""


@dataclass(frozen=True, slots=True)
class Routed:
    endpoint: Endpoint
    answer: Any
    attempts: int
    seconds: float     # the answering miner's round trip


class Router:
    def __init__(self, loop: ValidatorLoop, pool: MinerPool, *, attempt_timeout_s: float, max_attempts: int) -> None:
        self.loop = loop
        self.pool = pool
        self.attempt_timeout_s = attempt_timeout_s
        self.max_attempts = max_attempts

    def candidates(self) -> list[Endpoint]:
        ranked = self.loop.ranked()
        if not ranked:
            raise NoMinerServing(f"no miner serves subnet {self.loop.netuid} right now; try again later")
        return ranked[: self.max_attempts]

    async def route(self, ask: Callable[[MinerClient, float], Awaitable[Any]], well_formed: Callable[[Any], bool],
                    timeout_s: float, candidates: list[Endpoint] | None = None) -> Routed:
        """Ask the candidates one after another until one answers well within its attempt deadline."""
        deadline = time.monotonic() + timeout_s
        errors = []
        for attempt, endpoint in enumerate(candidates or self.candidates(), 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            budget = min(self.attempt_timeout_s, left)
            started = time.perf_counter()
            try:
                answer = await asyncio.wait_for(ask(self.pool.client(endpoint), budget), budget + 0.5)
            except aio.AioRpcError as exc:
                errors.append(f"uid {endpoint.uid}: {exc.code().name}")
            except TimeoutError:
                errors.append(f"uid {endpoint.uid}: no answer in {budget:.1f}s")
            except Exception as exc:   # a bad response signature, a closed channel
                errors.append(f"uid {endpoint.uid}: {type(exc).__name__}")
            else:
                if well_formed(answer):
                    return Routed(endpoint, answer, attempt, time.perf_counter() - started)
                errors.append(f"uid {endpoint.uid}: malformed answer")
            self.loop.mark_down(endpoint)
        raise NoMinerAnswered("no miner answered: " + "; ".join(errors or ["the query's time ran out"]))
