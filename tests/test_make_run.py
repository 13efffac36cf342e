"""`make run` end to end: the whole local network (real models on three subnets, validators, a paying
user) runs for RUN_SECONDS, exits 0, stops every process it started, and its summary shows emission
going to the better miners of each ladder and almost nothing to noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.devnet.plan import SUBNETS

ROOT = Path(__file__).resolve().parents[1]
RUN_SECONDS = int(os.environ.get("AGORA_TEST_RUN_SECONDS", "150"))


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (every child gets the run's wallet path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_make_run_brings_up_the_network_and_emission_follows_the_ladders(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env |= {"AGORA_RUN_DIR": str(run_dir), "RUN_SECONDS": str(RUN_SECONDS)}
    proc = subprocess.Popen([sys.executable, "-m", "services.devnet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=1100)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 0, out[-4000:]
    assert _processes_mentioning(str(run_dir)) == []   # no orphan left behind
    for name in [m.hotkey for s in SUBNETS for m in s.miners] + ["chain"]:
        assert (run_dir / "logs" / f"{name}.log").exists(), name
    assert "summary after" in out and "final incentives" in out, out[-3000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["queries_answered"] >= 3, summary
    assert summary["peak_rss_bytes"] < 22 * 2**30          # fits this 24 GiB machine
    assert {s["name"] for s in summary["subnets"]} == {s.name for s in SUBNETS}
    for sub in summary["subnets"]:
        incentives = [m["incentive"] for m in sub["miners"]]
        assert len(incentives) == 4 and sum(incentives) > 0.9, sub
        # the better half of each ladder earns most, the best rung earns something, noise next to nothing
        assert incentives[0] + incentives[1] > incentives[2] + incentives[3], sub
        assert max(incentives[:2]) == max(incentives), sub
        assert sub["noise_share"] < 0.01, sub

    # Redis kept its data: a second run finds the subnets instead of creating them
    assert (run_dir / "redis").is_dir() and any((run_dir / "redis").iterdir())
