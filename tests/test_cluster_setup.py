"""The dev overlay's setup Job: what it mounts (only public hotkeys, every neuron's) and what it does
on a real dev chain (subnets 1-3 with the manifests' tasks, every hotkey registered, validators
staked), idempotently."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from services.chain.client import ChainClient
from services.chain.main import ChainNode
from services.chain.subnets import TASK_BY_ENUM, NetworkParams
from services.common.units import RAO_PER_TAO
from services.devnet import cluster
from tests.conftest import chain_settings
from tests.test_deploy import arg_value, k8s_copy_with_dev_secrets, main_container, render, workloads


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return render(k8s_copy_with_dev_secrets(tmp_path_factory.mktemp("deploy")) / "overlays" / "dev")


def test_setup_job_mounts_the_public_hotkey_of_every_neuron_and_nothing_private(dev, tmp_path: Path) -> None:
    (job,) = [o for o in dev if o["kind"] == "Job"]
    spec = job["spec"]["template"]["spec"]
    secrets = {o["metadata"]["name"]: o for o in dev if o["kind"] == "Secret"}
    mounted = {}
    for volume in spec["volumes"]:
        if "secret" in volume:
            assert [i["key"] for i in volume["secret"]["items"]] == ["hotkeypub.txt"]   # never the private file
            assert volume["secret"]["secretName"] in secrets   # kustomize's hashed name
            mounted[volume["name"]] = secrets[volume["secret"]["secretName"]]
    neurons = {arg_value(main_container(o)["args"], "--wallet.hotkey") for o in workloads(dev)
               if o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] in ("miner", "validator")}
    assert set(mounted) == neurons
    # the Job reads exactly what the mounts give it
    for name, secret in mounted.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "hotkeypub.txt").write_bytes(base64.b64decode(secret["data"]["hotkeypub.txt"]))
    read = cluster.read_neurons(tmp_path)
    assert {n.name for n in read} == neurons and {n.role for n in read} == {"miner", "validator"}
    assert {n.task for n in read} == set(cluster.TASKS)
    netuid_of = {o["spec"]["template"]["metadata"]["labels"].get("agora/task"): arg_value(main_container(o)["args"],
                 "--netuid") for o in workloads(dev) if "--netuid" in main_container(o)["args"]}
    assert {t: int(n) for t, n in netuid_of.items() if t} == {t: i for i, t in enumerate(cluster.TASKS, start=1)}


def _neuron_folders(root: Path) -> list[cluster.Neuron]:
    from bittensor_wallet import Keypair

    names = ["miner-next-token-a", "validator-next-token-0", "miner-translation-a", "validator-translation-0",
             "miner-embedding-a", "validator-embedding-0"]
    for name in names:
        (root / name).mkdir()
        address = Keypair.create_from_uri(f"//cluster-test//{name}").ss58_address
        (root / name / "hotkeypub.txt").write_text(json.dumps({"ss58Address": address}))
    return cluster.read_neurons(root)


async def test_setup_creates_registers_and_stakes_once(redis_server, tmp_path: Path) -> None:
    neurons = _neuron_folders(tmp_path)
    node = ChainNode(chain_settings(redis_server, economics=NetworkParams(min_tempo=10), block_time_ms=50))
    await node.start()
    try:
        async with ChainClient(f"127.0.0.1:{node.server.port}") as client:
            await cluster.wait_for_chain(client, 10)
            assert await cluster.setup(client, neurons) == {"next-token": 1, "translation": 2, "embedding": 3}
            first = await client.info()
            for netuid, task in enumerate(cluster.TASKS, start=1):
                sub = await client.subnet(netuid)
                assert TASK_BY_ENUM[sub.task] == task
                assert {h.name: h.value for h in sub.hyperparameters}["tempo"] == cluster.HYPERPARAMETERS["tempo"]
                registered = {n.hotkey for n in (await client.metagraph(netuid)).neurons}
                assert {n.hotkey for n in neurons if n.task == task} <= registered
            owner = cluster.keys.dev_keypair(cluster.OWNER).ss58_address
            stakes = {s.hotkey: s.amount for s in (await client.stake(owner)).stakes}
            for n in neurons:
                assert stakes.get(n.hotkey, 0) == (cluster.VALIDATOR_STAKE_TAO * RAO_PER_TAO
                                                   if n.role == "validator" else 0)
            # a restarted Job changes nothing: no new subnet, registration or stake, so no fee either
            assert await cluster.setup(client, neurons) == {"next-token": 1, "translation": 2, "embedding": 3}
            again = await client.info()
            assert again.total_burned == first.total_burned and len(await client.subnets()) == 4
    finally:
        await node.stop()


def test_setup_refuses_folders_it_cannot_place(tmp_path: Path) -> None:
    (tmp_path / "oracle-next-token-x").mkdir()
    (tmp_path / "oracle-next-token-x" / "hotkeypub.txt").write_text(json.dumps({"ss58Address": "x"}))
    with pytest.raises(ValueError, match="oracle-next-token-x"):
        cluster.read_neurons(tmp_path)
