"""Build the validators' held-out data at image build, with the validator's own builder.

For each task, `services.validator.datasets.load_task_data(task, "offline", seed=...)` builds the
offline set (Debian's gettext catalogs, Python's docstrings, licence texts) with its seeded
held-out/public split. This copies each set to --out as `<task>.jsonl` (every row carries its split)
and `<task>.provenance.json`, then reads each file back as `jsonl:<file>` to check the split survives.
A validator in the image loads `jsonl:/opt/agora/data/<task>.jsonl`: read-only, with no catalogs
needed at run time. The offline set is PUBLIC (every miner has the same files): it serves
demonstrations and tests; an operator mounts data of their own at the same paths.

    python deploy/docker/build_heldout.py --out /opt/agora/data [--seed 0] [--tasks next-token ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

TASKS = ("next-token", "translation", "embedding")


def build(out: Path, *, seed: int = 0, tasks: tuple[str, ...] = TASKS, min_items: int = 100) -> dict[str, dict]:
    """Write <task>.jsonl and <task>.provenance.json per task into `out`; returns their provenance."""
    from services.validator.datasets import DataError, load_task_data

    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    with tempfile.TemporaryDirectory() as cache:
        for task in tasks:
            data = load_task_data(task, "offline", seed=seed, cache_dir=Path(cache), rebuild=True)
            if data.provenance.count < min_items:
                raise DataError(f"{task}: only {data.provenance.count} items (need {min_items}); are the gettext "
                                "catalogs installed? slim images tell dpkg to skip /usr/share/locale")
            target = out / f"{task}.jsonl"
            shutil.copyfile(data.path, target)
            provenance = {**asdict(data.provenance), "file": target.name}
            (out / f"{task}.provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
            again = load_task_data(task, f"jsonl:{target}")
            if (len(again.held_out), len(again.public)) != (len(data.held_out), len(data.public)):
                raise DataError(f"{target}: reads back with another split")
            summary[task] = provenance
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build Agora validators' offline held-out data as JSONL files.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out/public split")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = p.parse_args(argv)
    for task, info in build(args.out, seed=args.seed, tasks=tuple(args.tasks)).items():
        print(f"{task}: {info['count']} items, {info['held_out']} held out, sha256 {info['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
