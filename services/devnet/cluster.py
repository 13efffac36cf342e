"""The dev overlay's setup Job: on a dev chain (funded //Alice), create the subnets the manifests
name, register every neuron's hotkey on its subnet and stake the validators, so that
`kubectl apply -k deploy/k8s/overlays/dev` ends in a working network with no step by hand.

    python -m services.devnet.cluster --hotkeys /var/run/agora/neurons

Each folder under --hotkeys is one neuron's mounted hotkey Secret (`hotkeypub.txt`), named
`<miner|validator>-<task>-<rest>` as in the manifests. Subnets are created in the order of TASKS, so
on a fresh chain they get netuids 1, 2, 3 as the Deployments expect; an existing subnet with that
netuid and task is reused. Everything is idempotent: a restarted Job changes nothing twice. Dev
keys only: a real network's owner registers from the workstation that holds the coldkey.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.chain.client import (
    ChainClient,
    add_stake_call,
    burned_register_call,
    register_network_call,
    set_hyperparameter_call,
)
from services.chain.subnets import TASK_BY_ENUM
from services.cli.signing import dev_hotkey, send
from services.common import keys
from services.common.units import RAO_PER_TAO

log = logging.getLogger("agora.devnet.cluster")

TASKS = ("next-token", "translation", "embedding")   # netuid 1, 2, 3
OWNER = "Alice"
VALIDATOR_STAKE_TAO = 1_000
HYPERPARAMETERS = {"tempo": 60, "weights_rate_limit": 30, "target_regs_per_interval": 8}


@dataclass(frozen=True, slots=True)
class Neuron:
    name: str
    role: str        # miner | validator
    task: str
    hotkey: str      # SS58


def read_neurons(folder: Path) -> list[Neuron]:
    neurons = []
    for entry in sorted(folder.iterdir()):
        pub = entry / "hotkeypub.txt"
        if not pub.is_file():
            continue
        role, _, rest = entry.name.partition("-")
        task = next((t for t in TASKS if rest.startswith(t)), None)
        if role not in ("miner", "validator") or task is None:
            raise ValueError(f"{entry.name}: not <miner|validator>-<{'|'.join(TASKS)}>-<name>")
        neurons.append(Neuron(entry.name, role, task, json.loads(pub.read_text())["ss58Address"]))
    return neurons


async def wait_for_chain(client: ChainClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await client.info()).producer:
                return
        except Exception as exc:  # not up yet: the Job starts beside the chain
            if time.monotonic() > deadline:
                raise RuntimeError(f"no chain answered within {timeout_s:.0f}s: {exc}") from None
        await asyncio.sleep(2)


async def setup(client: ChainClient, neurons: list[Neuron]) -> dict[str, int]:
    """Create or find each task's subnet, register and stake what is missing; task -> netuid."""
    owner = keys.dev_keypair(OWNER)
    netuids: dict[str, int] = {}
    for netuid, task in enumerate(TASKS, start=1):
        existing = {s.netuid: s for s in await client.subnets()}
        if netuid in existing:
            found = TASK_BY_ENUM.get(existing[netuid].task)
            if found != task:
                raise RuntimeError(f"subnet {netuid} does {found}, the manifests expect {task}")
        else:
            if max(existing) + 1 != netuid:
                raise RuntimeError(f"the next new subnet would not be {netuid}: subnets {sorted(existing)} exist")
            await send(client, owner, [register_network_call(task, task, dev_hotkey(OWNER, "owner").ss58_address)],
                       what=f"create subnet {task}")
            log.info("created subnet %d (%s)", netuid, task)
        info = await client.subnet(netuid)
        current = {h.name: h.value for h in info.hyperparameters}
        changes = [set_hyperparameter_call(netuid, n, v) for n, v in HYPERPARAMETERS.items() if current.get(n) != v]
        if changes:
            await send(client, owner, changes, what=f"hyperparameters of subnet {netuid}")
        netuids[task] = netuid

    for task, netuid in netuids.items():
        registered = {n.hotkey for n in (await client.metagraph(netuid)).neurons}
        missing = [n for n in neurons if n.task == task and n.hotkey not in registered]
        if missing:
            await send(client, owner, [burned_register_call(netuid, n.hotkey) for n in missing],
                       what=f"register on subnet {netuid}")
            log.info("registered %s on subnet %d", ", ".join(n.name for n in missing), netuid)

    stakes = {s.hotkey: s.amount for s in (await client.stake(owner.ss58_address)).stakes}
    want = VALIDATOR_STAKE_TAO * RAO_PER_TAO
    top_ups = [add_stake_call(n.hotkey, want - stakes.get(n.hotkey, 0)) for n in neurons
               if n.role == "validator" and stakes.get(n.hotkey, 0) < want]
    if top_ups:
        await send(client, owner, top_ups, what="stake on validators")
        log.info("staked %d validators", len(top_ups))
    return netuids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devnet.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--chain", default=os.environ.get("AGORA_CHAIN", "127.0.0.1:50051"))
    parser.add_argument("--hotkeys", type=Path, required=True, help="one folder per neuron holding hotkeypub.txt")
    parser.add_argument("--wait-s", type=float, default=300, help="how long to wait for the chain")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    neurons = read_neurons(args.hotkeys)

    async def run() -> dict[str, int]:
        async with ChainClient(args.chain) as client:
            await wait_for_chain(client, args.wait_s)
            return await setup(client, neurons)

    try:
        netuids = asyncio.run(run())
    except Exception as exc:
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        log.error("setup failed: %s", detail)
        return 1
    log.info("ready: %s; %d neurons registered", ", ".join(f"{t} = {n}" for t, n in netuids.items()), len(neurons))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
