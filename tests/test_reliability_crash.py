"""Crashes on real processes: SIGKILL of the block producer (also inside a block), fail-over to a
standby producer, SIGKILL of Redis with its append-only file. Under a transfer load, every
acknowledged transfer ends in exactly one block, no transfer is applied twice or by half, every
balance adds up, no finalized block is lost or rewritten, and the chain's blocks replay to its
state. The scenarios live in tests/chain_crashes.py (the reliability benchmark runs them too).

AGORA_SOAK=1 (make soak) runs more crash rounds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chain_crashes import TAKEOVER_LIMIT_S, producer_kills, redis_kills, standby_takeovers

SOAK = os.environ.get("AGORA_SOAK", "") not in ("", "0")
ROUNDS = int(os.environ.get("AGORA_SOAK_CRASH_ROUNDS", "20" if SOAK else "4"))


def _clean(report) -> None:
    assert report.problems == [], "\n".join(report.problems)
    assert report.tokens_lost_rao == 0
    # the load really ran through the crashes
    assert report.transfers["queued"] > 20 and report.transfers["included"] >= report.transfers["queued"]


@pytest.mark.slow
async def test_sigkill_of_the_producer_loses_and_repeats_no_transfer(redis_server, tmp_path: Path):
    report = await producer_kills(redis_server.url, tmp_path, rounds=ROUNDS, seed=ROUNDS)
    _clean(report)
    assert report.survived == report.injected >= ROUNDS
    assert report.in_block >= 1, "no kill landed inside a block"


@pytest.mark.slow
async def test_standby_takes_over_within_the_lease_when_the_producer_is_killed(redis_server, tmp_path: Path):
    report = await standby_takeovers(redis_server.url, tmp_path, rounds=max(2, ROUNDS // 2), seed=ROUNDS + 1)
    _clean(report)
    assert report.survived == report.injected == max(2, ROUNDS // 2)
    assert max(report.takeover_seconds) <= TAKEOVER_LIMIT_S


@pytest.mark.slow
async def test_redis_sigkill_with_append_only_file_loses_no_finalized_block(tmp_path: Path):
    report = await redis_kills(tmp_path, rounds=max(2, ROUNDS // 2), seed=ROUNDS + 2)
    _clean(report)
    assert report.survived == report.injected
