"""Reliability figures for bad input: the sweep of tests/bad_input.py, run once over a fresh network.

- reliability.bad_inputs_tried.<service>.<method>: cases sent to each method (raw, and for the miner
  also signed afresh so they get past the signature check); reliability.bad_inputs_tried is the total
  and reliability.bad_inputs_tried.<service> each service's.
- reliability.bad_inputs_internal_errors: answers that were no deliberate refusal (UNKNOWN,
  INTERNAL, a hang or a dropped connection) or not the one right code (INVALID_ARGUMENT for bytes
  that do not parse, RESOURCE_EXHAUSTED past the size limit), plus servers no longer SERVING after.
  Must be 0.
- reliability.state_changed_by_bad_input: 1 if the chain's state digest, totals (pool size
  included) or head differ after the sweep, else 0; the chain node produces no blocks meanwhile.
  Must be 0.
- reliability.model_calls_by_refused_input: model calls beyond the requests that were answered. Must be 0.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from services.common.redis_server import temporary_redis
from tests.bad_input import open_world, sweep


async def _run(redis_url: str, workdir: Path) -> dict[str, float | int]:
    async with open_world(redis_url, workdir) as world:
        before, calls_before = await world.fingerprint(), world.model_calls
        result = await sweep(world.targets())
        unhealthy = await world.unhealthy()
        changed = await world.fingerprint() != before
        answered = result.ok("miner") + result.ok("validator", "Query")
        extra_calls = max(0, world.model_calls - calls_before - answered)
    out: dict[str, float | int] = {"reliability.bad_inputs_tried": result.total}
    for (service, method), n in sorted(result.tried.items()):
        out[f"reliability.bad_inputs_tried.{service}.{method}"] = n
        out[f"reliability.bad_inputs_tried.{service}"] = out.get(f"reliability.bad_inputs_tried.{service}", 0) + n
    for category, n in sorted(result.categories.items()):
        out[f"reliability.bad_inputs_by_kind.{category}"] = n
    out["reliability.bad_inputs_internal_errors"] = len(result.failures) + len(unhealthy)
    out["reliability.state_changed_by_bad_input"] = int(changed)
    out["reliability.model_calls_by_refused_input"] = extra_calls
    return out


def run() -> dict[str, float | int]:
    redis = temporary_redis().start()
    try:
        with tempfile.TemporaryDirectory(prefix="agora-bad-input-") as workdir:
            return asyncio.run(_run(redis.url, Path(workdir)))
    finally:
        redis.stop()
