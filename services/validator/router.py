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
    """The subnet has no miner with an endpoint, or none that answered the validator lately."""


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
        """The miners to ask, best first; NoMinerServing if none is known to be up (checked before a
        user pays, so that a query nobody can answer costs nothing)."""
        ranked = self.loop.ranked()
        if not ranked:
            raise NoMinerServing(f"no miner serves subnet {self.loop.netuid} right now; try again later")
        up = {e.uid for e in self.loop.serving()}
        if not up:
            raise NoMinerServing(f"no miner serves subnet {self.loop.netuid} right now: all {len(ranked)} failed "
                                 "the validator's last round or a recent query; try again later")
        chosen = ranked[: self.max_attempts]
        if not up.intersection(e.uid for e in chosen):
            # the attempts would all go to miners seen failing: the last one goes to the best that answered
            chosen[-1] = next(e for e in ranked if e.uid in up)
        return chosen

    def ensemble_candidates(self, k: int) -> list[Endpoint]:
        """The best `k` miners known to be up (NoMinerServing if none is)."""
        self.candidates()   # the same refusals when nobody serves
        up = {e.uid for e in self.loop.serving()}
        return [e for e in self.loop.ranked() if e.uid in up][:k]

    async def route_all(self, ask: Callable[[MinerClient, float], Awaitable[Any]], well_formed: Callable[[Any], bool],
                        timeout_s: float, candidates: list[Endpoint]) -> list[Routed]:
        """Ask every candidate at once, within the attempt deadline; the well-formed answers, in the
        candidates' order. NoMinerAnswered if none came."""
        budget = min(self.attempt_timeout_s, timeout_s)
        results = await asyncio.gather(*(self._attempt(e, 1, ask, well_formed, budget) for e in candidates))
        answered = [r for r in results if isinstance(r, Routed)]
        if not answered:
            raise NoMinerAnswered("no miner answered: " + "; ".join(r for r in results if isinstance(r, str)))
        return answered

    async def _attempt(self, endpoint: Endpoint, attempt: int, ask: Callable[[MinerClient, float], Awaitable[Any]],
                       well_formed: Callable[[Any], bool], budget: float) -> Routed | str:
        """Ask one miner within `budget`: its well-formed answer, or why not (and it is marked down)."""
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(ask(self.pool.client(endpoint), budget), budget + 0.5)
        except aio.AioRpcError as exc:
            problem = f"uid {endpoint.uid}: {exc.code().name}"
        except TimeoutError:
            problem = f"uid {endpoint.uid}: no answer in {budget:.1f}s"
        except Exception as exc:   # a bad response signature, a closed channel
            problem = f"uid {endpoint.uid}: {type(exc).__name__}"
        else:
            if well_formed(answer):
                return Routed(endpoint, answer, attempt, time.perf_counter() - started)
            problem = f"uid {endpoint.uid}: malformed answer"
        self.loop.mark_down(endpoint)
        return problem

    async def route(self, ask: Callable[[MinerClient, float], Awaitable[Any]], well_formed: Callable[[Any], bool],
                    timeout_s: float, candidates: list[Endpoint] | None = None) -> Routed:
        """Ask the candidates (default: `candidates()`) one after another until one answers well within
        its attempt deadline."""
        deadline = time.monotonic() + timeout_s
        errors = []
        for attempt, endpoint in enumerate(candidates or self.candidates(), 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            result = await self._attempt(endpoint, attempt, ask, well_formed, min(self.attempt_timeout_s, left))
            if isinstance(result, Routed):
                return result
            errors.append(result)
        raise NoMinerAnswered("no miner answered: " + "; ".join(errors or ["the query's time ran out"]))
