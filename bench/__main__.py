"""`make bench [BENCH=group]`: run benchmark groups and write one JSON object (bench.json).

Every figure is measured in this run, next to the baseline it is compared with, on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _chain() -> dict[str, float]:
    from bench import chain_bench

    return asyncio.run(chain_bench.run())


def _yuma() -> dict[str, float]:
    from bench import yuma_bench, yuma_state_bench
    from services.common.redis_server import temporary_redis

    out = yuma_bench.run()

    redis = temporary_redis().start()
    try:
        out |= asyncio.run(yuma_state_bench.run(redis.url))
    finally:
        redis.stop()
    return out


def _miner() -> dict[str, float]:
    from bench import miner_bench

    return asyncio.run(miner_bench.run())


def _validator() -> dict[str, float]:
    from bench import validator_bench

    return asyncio.run(validator_bench.run())


def _reliability() -> dict[str, float]:
    """Counts of what the reliability runs tried (valid and invalid extrinsics, crashes, bad inputs
    per method) beside what must stay 0 (tokens lost, state changed by rejected input), and the
    miner's throughput and p99 at 1x, 3x and 10x its capacity; the pool's deepest drain and an
    attacker's flood against honest inclusion latency."""
    from bench import reliability_chain, reliability_input, reliability_load, reliability_pool

    return reliability_chain.run() | reliability_pool.run() | reliability_input.run() | reliability_load.run()


GROUPS: dict[str, Callable[[], dict[str, float]]] = {
    "chain": _chain, "yuma": _yuma, "miner": _miner, "validator": _validator, "reliability": _reliability,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--group", default="all", help=f"one of {', '.join(GROUPS)} or all")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    names = list(GROUPS) if args.group == "all" else args.group.split(",")
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    results: dict[str, object] = {
        "meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "machine": platform.machine(), "groups": names},
    }
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        figures = GROUPS[name]()
        for key, value in figures.items():
            print(f"  {key} = {value:,.3f}" if isinstance(value, float) else f"  {key} = {value}", file=sys.stderr)
        results |= figures
        results[f"meta.{name}_seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
