"""reliability.*: what the chain was put through in this run and what it lost (nothing, or the run
says how much).

Random valid and invalid extrinsics of every kind (tests/chain_traffic.py) go through the real
producer for a fixed number of blocks; every block is audited against its events, every refused
submission is checked to have changed no key, and the chain is replayed on a fresh prefix. Then
the crash scenarios of tests/chain_crashes.py run on real processes: SIGKILL of the producer (also
inside a block), fail-over to a standby, SIGKILL of Redis with its append-only file. Counts are
measured, never constants: tokens_lost_rao sums every balance's distance from what the accounting
expects, state_changed_by_rejected counts refusals after which a digest of every key differed.

`python -m bench.reliability_chain [--soak] [--out FILE]` runs it alone (make soak: the soak size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.chain.ledger import Ledger
from services.chain.ledger.digest import state_digest
from services.chain.replay import replay_blocks
from services.common.errors import AgoraError
from services.common.redis_server import temporary_redis
from tests.chain_crashes import CrashReport, producer_kills, redis_kills, standby_takeovers
from tests.chain_traffic import (
    ACCOUNTS,
    audit_block,
    drop_network,
    full_digest,
    new_network,
    propose,
    read_view,
    snapshot,
    submit_attempt,
)

SEED = 20_260_101
MAX_SUBMISSIONS_PER_BLOCK = 6


@dataclass(frozen=True, slots=True)
class Size:
    traffic_blocks: int
    crash_rounds: int


FIXED = Size(traffic_blocks=150, crash_rounds=4)
SOAK = Size(traffic_blocks=3000, crash_rounds=20)


@dataclass
class TrafficReport:
    valid: int = 0                    # included and took effect
    invalid: int = 0                  # refused at submit, failed in their block, or dropped from it
    rejected_changed_state: int = 0
    blocks: int = 0
    epochs: int = 0
    tokens_lost_rao: int = 0
    problems: int = 0                 # audit findings and replay mismatches


async def random_traffic(redis_url: str, blocks: int, seed: int) -> TrafficReport:
    rng, report = random.Random(seed), TrafficReport()
    local = await new_network(redis_url, tag="bench-rel")
    ledger = local.ledger
    addresses = [k.ss58_address for k in ACCOUNTS]
    before = await snapshot(ledger, addresses)
    digests: dict[int, str] = {}
    try:
        for _ in range(blocks):
            view = await read_view(ledger)
            queued = []
            for _ in range(rng.randint(0, MAX_SUBMISSIONS_PER_BLOCK)):
                attempt = propose(rng, view)
                state = await full_digest(ledger)
                _, got = await submit_attempt(local, attempt)
                if isinstance(got, AgoraError):
                    report.invalid += 1
                    report.rejected_changed_state += await full_digest(ledger) != state
                else:
                    queued.append(got)
            (block,) = await local.produce()
            before, problems = await audit_block(ledger, before, block)
            report.problems += len(problems)
            e = before.economy
            held = sum(before.free.values()) + e.total_stake + e.locked + e.pending_emission
            accounted = e.genesis_issuance + e.minted - e.burned
            report.tokens_lost_rao += abs(e.issuance - held) + abs(e.issuance - accounted)
            for xt_hash in queued:
                out = await local.outcome(xt_hash)
                if out.ok:
                    report.valid += 1
                else:
                    report.invalid += 1
                    report.problems += out.state == "queued"
            report.blocks += 1
            report.epochs += sum(1 for ev in block.events if ev.name == "EpochRun")
            digests[block.header.number] = await state_digest(ledger.redis, ledger.keys)
        target = Ledger(ledger.redis, f"{ledger.network}-replay")
        try:
            async for replayed in replay_blocks(ledger, target):
                want = digests.get(replayed.number)
                report.problems += want is not None and await state_digest(target.redis, target.keys) != want
        except Exception:  # a diverging replay is a finding, not a crash of the benchmark
            report.problems += 1
        finally:
            await drop_network(target)
    finally:
        await local.close()
        await drop_network(ledger)
    return report


async def measure(size: Size) -> dict[str, float | int]:
    workdir = Path(tempfile.mkdtemp(prefix="agora-bench-reliability-"))
    redis = temporary_redis().start()
    try:
        traffic = await random_traffic(redis.url, size.traffic_blocks, SEED)
        crashes: list[CrashReport] = [
            await producer_kills(redis.url, workdir, rounds=size.crash_rounds, seed=SEED + 1),
            await standby_takeovers(redis.url, workdir, rounds=max(2, size.crash_rounds // 2), seed=SEED + 2),
            await redis_kills(workdir, rounds=max(2, size.crash_rounds // 2), seed=SEED + 3),
        ]
    finally:
        redis.stop()
    takeovers = [s for c in crashes for s in c.takeover_seconds]
    return {
        "reliability.extrinsics_tried_valid": traffic.valid,
        "reliability.extrinsics_tried_invalid": traffic.invalid,
        "reliability.blocks_audited": traffic.blocks,
        "reliability.epochs_audited": traffic.epochs,
        "reliability.crashes_injected": sum(c.injected for c in crashes),
        "reliability.crashes_survived": sum(c.survived for c in crashes),
        "reliability.kills_inside_a_block": sum(c.in_block for c in crashes),
        "reliability.standby_takeover_max_s": round(max(takeovers, default=0.0), 3),
        "reliability.transfers_acknowledged_under_crashes": sum(c.transfers["queued"] for c in crashes),
        "reliability.tokens_lost_rao": traffic.tokens_lost_rao + sum(c.tokens_lost_rao for c in crashes),
        "reliability.state_changed_by_rejected": traffic.rejected_changed_state,
        "reliability.problems_found": traffic.problems + sum(len(c.problems) for c in crashes),
    }


def run() -> dict[str, float | int]:
    """The fixed-size run of `make bench`."""
    return asyncio.run(measure(FIXED))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.reliability_chain")
    parser.add_argument("--soak", action="store_true", default=os.environ.get("AGORA_SOAK", "") not in ("", "0"),
                        help="the soak size (default with AGORA_SOAK=1)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    size = SOAK if args.soak else FIXED
    figures = {"meta.size": f"{size.traffic_blocks} blocks of traffic, {size.crash_rounds} crash rounds"}
    figures |= asyncio.run(measure(size))
    for key, value in figures.items():
        print(f"  {key} = {value}", file=sys.stderr)
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    # the soak fails loudly when anything was lost or a crash not survived
    bad = (figures["reliability.tokens_lost_rao"] or figures["reliability.state_changed_by_rejected"]
           or figures["reliability.problems_found"]
           or figures["reliability.crashes_survived"] != figures["reliability.crashes_injected"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
