"""`agora subnets|stake|delegate|weights|root` as real subprocesses against a real chain whose
genesis allows low tempos, so epochs run within a second; offline checks run in-process.

Dev keys sign most calls (`--dev Bob --wallet.hotkey validator`: coldkey //Bob, hotkey
//Bob//validator); one test signs with an encrypted wallet coldkey and its hotkey.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.chain.client import ChainClient
from services.chain.main import ChainNode
from services.chain.subnets import NetworkParams
from services.cli.main import main
from services.cli.signing import dev_hotkey
from services.cli.weights_cmds import u16_weights
from services.common import keys
from services.common.redis_server import free_port
from services.common.units import RAO_PER_TAO
from tests.conftest import chain_settings
from tests.test_cli import AGORA, PASSWORD, Agora, Result, new_coldkey, no_traceback, runner

TAO = RAO_PER_TAO
ECON = NetworkParams(min_tempo=1, root_weights_rate_limit=0)
ROOT = Path(__file__).resolve().parents[1]
BOB = keys.dev_keypair("Bob").ss58_address


@pytest.fixture
async def node(redis_server) -> AsyncIterator[ChainNode]:
    n = ChainNode(chain_settings(redis_server, economics=ECON))
    await n.start()
    yield n
    await n.stop()


@pytest.fixture
async def chain_client(node: ChainNode) -> AsyncIterator[ChainClient]:
    c = ChainClient(f"127.0.0.1:{node.server.port}")
    yield c
    await c.close()


@pytest.fixture
def wallets(tmp_path: Path) -> Path:
    return tmp_path / "wallets"


@pytest.fixture
def cli(node: ChainNode, tmp_path: Path) -> Agora:
    return runner(tmp_path, f"127.0.0.1:{node.server.port}")


async def ok(cli: Agora, *args: str, password: str | None = None) -> dict:
    r = await cli(*args, "--json", password=password)
    assert r.code == 0, r.err
    return r.json()


def refused(r: Result, code: str, words: str) -> None:
    """Exit 1 with one line `error: CODE: ...` naming what was wrong."""
    assert r.code == 1, (r.out, r.err)
    assert r.err.startswith(f"error: {code}: ") and words in r.err, r.err
    assert r.err.count("\n") == 1
    no_traceback(r)


async def new_subnet(cli: Agora, **hyperparameters: int) -> int:
    created = await ok(cli, "subnets", "create", "--dev", "Alice", "--wallet.hotkey", "owner",
                       "--task", "next-token", "--name", "text")
    netuid = created["netuid"]
    sets = [a for name, value in hyperparameters.items() for a in ("--set", f"{name}={value}")]
    if sets:
        await ok(cli, "subnets", "hyperparameters", "--netuid", str(netuid), "--dev", "Alice", *sets)
    return netuid


async def register(cli: Agora, netuid: int, dev: str, hotkey: str) -> int:
    r = await ok(cli, "subnets", "register", "--netuid", str(netuid), "--dev", dev, "--wallet.hotkey", hotkey)
    return r["uid"]


async def wait_for_epoch_after(client: ChainClient, netuid: int, block: int) -> None:
    for _ in range(300):
        if (await client.subnet(netuid)).last_epoch_block > block:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"subnet {netuid} ran no epoch after block {block}")


# ---- the whole flow ----

async def test_create_register_stake_and_weights_then_an_epoch_pays_the_preferred_miner(cli, chain_client):
    created = await ok(cli, "subnets", "create", "--dev", "Alice", "--wallet.hotkey", "owner",
                       "--task", "next-token", "--name", "text")
    netuid = created["netuid"]
    assert netuid == 1 and created["success"] is True and created["block"] > 0
    assert created["owner_hotkey"] == dev_hotkey("Alice", "owner").ss58_address
    changed = await ok(cli, "subnets", "hyperparameters", "--netuid", "1", "--dev", "Alice",
                       "--set", "tempo=3", "--set", "weights_rate_limit=0")
    assert [(c["name"], c["old"], c["value"]) for c in changed["changed"]] == [
        ("tempo", 360, 3), ("weights_rate_limit", 100, 0)]

    assert await register(cli, netuid, "Bob", "validator") == 0
    assert await register(cli, netuid, "Eve", "miner") == 1
    r = await ok(cli, "subnets", "register", "--netuid", "1", "--dev", "Ferdie", "--wallet.hotkey", "miner",
                 "--max-burn", "1")
    assert (r["uid"], r["burn_rao"]) == (2, TAO)

    staked = await ok(cli, "stake", "add", "--dev", "Bob", "--wallet.hotkey", "validator", "--amount", "100")
    # epochs run every 3 blocks from registration on, so the hotkey may already hold some emission
    assert staked["amount_rao"] == 100 * TAO and staked["stake_rao"] >= 100 * TAO
    assert staked["hotkey"] == dev_hotkey("Bob", "validator").ss58_address

    before = await ok(cli, "subnets", "metagraph", "--netuid", "1")
    assert [n["incentive"] for n in before["neurons"]] == [0, 0, 0]

    w = await ok(cli, "weights", "set", "--netuid", "1", "--dev", "Bob", "--wallet.hotkey", "validator",
                 "--uids", "1,2", "--weights", "0.75,0.25")
    assert (w["uid"], w["uids"], w["weights_u16"]) == (0, [1, 2], [65535, 21845])
    await wait_for_epoch_after(chain_client, netuid, w["block"])

    after = await ok(cli, "subnets", "metagraph", "--netuid", "1", "--weights", "--bonds")
    validator, miner_a, miner_b = after["neurons"]
    assert miner_a["incentive"] == pytest.approx(0.75, abs=1e-3)
    assert miner_b["incentive"] == pytest.approx(0.25, abs=1e-3)
    assert miner_a["emission_rao"] > miner_b["emission_rao"] > 0
    assert validator["dividends"] == pytest.approx(1.0, abs=1e-3) and validator["emission_rao"] > 0
    assert validator["validator_permit"] is True and validator["stake_rao"] > 100 * TAO
    assert validator["weights"] == [[1, 65535], [2, 21845]] and validator["bonds"]
    assert after["last_epoch_block"] > w["block"]

    table = await cli("subnets", "metagraph", "--netuid", "1")
    header, *rows = table.out.splitlines()[1:]
    assert header.split()[:4] == ["UID", "HOTKEY", "COLDKEY", "STAKE"] and "VPERMIT" in header
    assert len(rows) == 3 and "0.7500" in rows[1]

    listed = (await ok(cli, "subnets", "list"))["subnets"]
    assert [(s["netuid"], s["name"]) for s in listed] == [(0, "root"), (1, "text")]
    assert (listed[1]["n"], listed[1]["tempo"], listed[1]["emission_share"]) == (3, 3, 1.0)
    people = await cli("subnets", "list")
    assert "next-token" in people.out and "3/256" in people.out


async def test_wallet_coldkey_signs_with_its_password_and_the_hotkey_needs_none(cli, chain_client, wallets):
    owner = await new_coldkey(cli, wallets, "owner")  # encrypted
    r = await cli("wallet", "new-hotkey", "--wallet.name", "owner", "--wallet.hotkey", "hk",
                  "--wallet.path", str(wallets), "--json")
    hotkey = r.json()["hotkey"]
    assert (await cli("wallet", "transfer", "--dev", "Alice", "--dest", owner, "--amount", "500")).code == 0
    w = ("--wallet.name", "owner", "--wallet-path", str(wallets), "--wallet.hotkey", "hk")

    created = await ok(cli, "subnets", "create", *w, "--task", "translation", "--name", "mine", password=PASSWORD)
    assert (created["owner_coldkey"], created["owner_hotkey"]) == (owner, hotkey)
    netuid = str(created["netuid"])
    reg = await ok(cli, "subnets", "register", "--netuid", netuid, *w, password=PASSWORD)
    assert (reg["uid"], reg["hotkey"], reg["coldkey"]) == (0, hotkey, owner)
    await ok(cli, "stake", "add", *w, "--amount", "10", password=PASSWORD)
    await ok(cli, "subnets", "hyperparameters", "--netuid", netuid, "--wallet.name", "owner",
             "--wallet.path", str(wallets), "--set", "weights_rate_limit=0", password=PASSWORD)

    # hotkey-signed: no password in the environment and nothing on stdin, yet it signs
    r = await cli("weights", "set", "--netuid", netuid, *w, "--uids", "0", "--weights", "1", "--json")
    assert r.code == 0, r.err
    assert r.json()["hotkey"] == hotkey and r.json()["fee_rao"] == 0

    wrong = await cli("stake", "add", *w, "--amount", "1", password="not it")
    refused(wrong, "UNAUTHENTICATED", "wrong password")
    listed = await ok(cli, "stake", "list", "--wallet.name", "owner", "--wallet.path", str(wallets))
    ((staked_on, stake),) = [(s["hotkey"], s["stake_rao"]) for s in listed["stakes"]]
    # the stake added, plus whatever epochs paid this subnet's only uid while the test ran (as
    # many blocks as the machine's speed allows): never more than the emission its blocks minted
    assert staked_on == hotkey and stake >= 10 * TAO
    head = (await chain_client.info()).head_number
    minted = 0
    for number in range(1, head + 1):
        minted += sum(int(e.attributes["amount"]) for e in (await chain_client.block(number)).events
                      if e.name == "Emission" and e.attributes["netuid"] == netuid)
    assert stake - 10 * TAO <= minted, (stake, minted)


# ---- refusals ----

async def test_unknown_netuid_is_not_found_everywhere(cli, chain_client):
    for args in (("subnets", "metagraph", "--netuid", "99"), ("subnets", "hyperparameters", "--netuid", "99"),
                 ("subnets", "register", "--netuid", "99", "--dev", "Bob"),
                 ("weights", "set", "--netuid", "99", "--dev", "Bob", "--uids", "0", "--weights", "1")):
        refused(await cli(*args), "NOT_FOUND", "no subnet 99")


async def test_register_above_max_burn_fails_cleanly_and_burns_nothing(cli, chain_client):
    netuid = await new_subnet(cli)
    before = await chain_client.account(BOB)
    r = await cli("subnets", "register", "--netuid", str(netuid), "--dev", "Bob", "--max-burn", "0.5")
    refused(r, "FAILED_PRECONDITION", "above --max-burn 0.500000000 TAO")
    assert await chain_client.account(BOB) == before
    assert (await chain_client.subnet(netuid)).n == 0


async def test_hyperparameter_changes_are_checked_before_signing(cli, chain_client):
    netuid = str(await new_subnet(cli))
    hp = await ok(cli, "subnets", "hyperparameters", "--netuid", netuid)
    tempo = next(h for h in hp["hyperparameters"] if h["name"] == "tempo")
    assert (tempo["value"], tempo["min"], tempo["owner_settable"]) == (360, 1, True)
    root = await ok(cli, "subnets", "hyperparameters", "--netuid", "0")
    assert not any(h["owner_settable"] for h in root["hyperparameters"])

    refused(await cli("subnets", "hyperparameters", "--netuid", netuid, "--dev", "Bob", "--set", "tempo=5"),
            "PERMISSION_DENIED", "is owned by")
    refused(await cli("subnets", "hyperparameters", "--netuid", netuid, "--dev", "Alice", "--set", "tempo=0"),
            "OUT_OF_RANGE", "allowed 1..50400")
    refused(await cli("subnets", "hyperparameters", "--netuid", netuid, "--dev", "Alice", "--set", "speed=5"),
            "INVALID_ARGUMENT", "no hyperparameter 'speed'")
    refused(await cli("subnets", "hyperparameters", "--netuid", netuid, "--dev", "Alice", "--set", "tempo"),
            "INVALID_ARGUMENT", "NAME=VALUE")
    assert (await chain_client.subnet(int(netuid))).hyperparameters[0].value == 360


async def test_chain_refusals_come_back_with_their_code_and_reason(cli, chain_client):
    netuid = str(await new_subnet(cli))
    await register(cli, int(netuid), "Bob", "validator")
    weights = ("weights", "set", "--netuid", netuid, "--dev", "Bob", "--wallet.hotkey", "validator")
    refused(await cli(*weights, "--uids", "0", "--weights", "1"), "RESOURCE_EXHAUSTED", "retry in")
    refused(await cli(*weights, "--uids", "5", "--weights", "1"), "OUT_OF_RANGE", "uid 5 does not exist")
    refused(await cli("stake", "remove", "--dev", "Bob", "--wallet.hotkey", "validator", "--amount", "1"),
            "FAILED_PRECONDITION", "rao staked on")
    refused(await cli("subnets", "register", "--netuid", netuid, "--dev", "Bob", "--wallet.hotkey", "validator"),
            "ALREADY_EXISTS", "already holds uid 0")
    refused(await cli("stake", "add", "--dev", "Charlie", "--hotkey", dev_hotkey("Bob", "validator").ss58_address,
                      "--amount", "1"), "PERMISSION_DENIED", "not a delegate")


def test_offline_input_errors_name_the_bad_value(capsys):
    dead = ["--chain", f"127.0.0.1:{free_port()}"]  # INVALID_ARGUMENT, not UNAVAILABLE: nothing was sent
    cases = [
        (["weights", "set", "--netuid", "1", "--dev", "Bob", "--uids", "0,1,2", "--weights", "0.5,0.5"],
         "error: INVALID_ARGUMENT: 3 uids but 2 weights: give one weight per uid\n"),
        (["weights", "set", "--netuid", "1", "--dev", "Bob", "--uids", "0,0", "--weights", "1,1"],
         "error: INVALID_ARGUMENT: --uids '0,0': each id may appear once\n"),
        (["weights", "set", "--netuid", "1", "--dev", "Bob", "--uids", "0,1", "--weights", "0,0"],
         "error: INVALID_ARGUMENT: all weights are zero: give at least one positive weight\n"),
        (["root", "weights", "--dev", "Bob", "--netuids", "1,2", "--weights", "1,x"],
         "error: INVALID_ARGUMENT: --weights '1,x': need comma-separated numbers, e.g. 0.5,0.3,0.2\n"),
        (["delegate", "take", "--dev", "Bob", "--take", "0.2"],
         "error: OUT_OF_RANGE: --take 0.2: need a fraction 0..0.18 (18% is the most a delegate may keep)\n"),
        (["subnets", "register", "--netuid", "1", "--dev", "Bob", "--max-burn", "1.0000000001"],
         "error: INVALID_ARGUMENT: '1.0000000001': need 0..9007199254740991 rao, at most 9 decimals of TAO\n"),
    ]
    for argv, expected in cases:
        assert main([*argv, *dead]) == 1, argv
        assert capsys.readouterr().err == expected
    assert main(["stake", "add", "--dev", "Bob", "--amount", "1.0000000001", *dead]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: INVALID_ARGUMENT: '1.0000000001'") and "9 decimals" in err
    assert main(["stake", "add", "--dev", "Bob", "--amount", "1", "--wallet.hotkey", "v", "--hotkey", BOB]) == 2


def test_weights_are_max_upscaled_to_u16_as_btcli_does():
    assert u16_weights([0, 1, 2], "0.5,0.3,0.2", "uids") == ([0, 1, 2], [65535, 39321, 26214])
    assert u16_weights([4, 7], "2,6", "uids") == ([4, 7], [21845, 65535])
    assert u16_weights([0, 1, 2], "1,0,0.000001", "uids") == ([0], [65535])  # zeros dropped, as btcli


# ---- delegates and root ----

async def test_delegate_take_lets_others_stake_and_lists_it(cli, chain_client):
    netuid = await new_subnet(cli)
    await register(cli, netuid, "Bob", "validator")
    hotkey = dev_hotkey("Bob", "validator").ss58_address
    take = await ok(cli, "delegate", "take", "--dev", "Bob", "--wallet.hotkey", "validator", "--take", "0.1")
    assert take["take_u16"] == 6553
    await ok(cli, "stake", "add", "--dev", "Bob", "--wallet.hotkey", "validator", "--amount", "5")
    nominated = await ok(cli, "stake", "add", "--dev", "Charlie", "--hotkey", hotkey, "--amount", "2.5")
    assert nominated["stake_rao"] == 2_500_000_000

    (d,) = (await ok(cli, "delegate", "list"))["delegates"]
    assert (d["hotkey"], d["owner"], d["take_u16"], d["total_stake_rao"], d["nominators"], d["netuids"]) == (
        hotkey, BOB, 6553, 7_500_000_000, 2, [netuid])
    charlie = keys.dev_keypair("Charlie").ss58_address
    listed = await ok(cli, "stake", "list", "--address", charlie)
    assert [(s["hotkey"], s["stake_rao"], s["is_delegate"]) for s in listed["stakes"]] == [
        (hotkey, 2_500_000_000, True)]
    people = await cli("stake", "list", "--dev", "Charlie")
    assert hotkey in people.out and "10.00%" in people.out

    removed = await ok(cli, "stake", "remove", "--dev", "Charlie", "--hotkey", hotkey, "--amount", "1")
    assert removed["stake_rao"] == 1_500_000_000


async def test_root_register_and_root_weights(cli, chain_client):
    netuid = await new_subnet(cli)
    await register(cli, netuid, "Bob", "validator")
    joined = await ok(cli, "root", "register", "--dev", "Bob", "--wallet.hotkey", "validator")
    assert (joined["netuid"], joined["uid"]) == (0, 0)
    w = await ok(cli, "root", "weights", "--dev", "Bob", "--wallet.hotkey", "validator",
                 "--netuids", str(netuid), "--weights", "1")
    assert (w["netuids"], w["weights_u16"]) == ([netuid], [65535])
    root = await ok(cli, "subnets", "metagraph", "--netuid", "0", "--weights")
    assert root["neurons"][0]["weights"] == [[netuid, 65535]]
    refused(await cli("root", "weights", "--dev", "Bob", "--wallet.hotkey", "validator", "--netuids", "42",
                      "--weights", "1"), "NOT_FOUND", "no subnet 42")


# ---- the chain node's genesis economics ----

async def test_chain_start_takes_min_tempo_and_the_genesis_files_economics(redis_server, tmp_path):
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"balances": {BOB: 1_000 * TAO},
                                   "economics": {"min_tempo": 7, "lock_cost_rao": 5 * TAO}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env |= {"AGORA_REDIS_URL": redis_server.url, "AGORA_NETWORK": f"econ-{free_port()}", "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        *AGORA, "chain", "start", "--port", "0", "--metrics-port", "0", "--block-time-ms", "100",
        "--genesis", str(genesis), "--min-tempo", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "agora chain start exited before serving"
            if m := re.search(r"serving gRPC on [\d.]+:(\d+)", line):
                port = int(m.group(1))
        cli = runner(tmp_path, f"127.0.0.1:{port}")
        root = await ok(cli, "subnets", "hyperparameters", "--netuid", "0")
        assert next(h["min"] for h in root["hyperparameters"] if h["name"] == "tempo") == 2  # the flag wins
        created = await ok(cli, "subnets", "create", "--dev", "Bob", "--task", "embedding", "--name", "e")
        assert created["locked_rao"] == 5 * TAO  # from the file
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


async def test_weights_commit_then_reveal_in_its_window(cli, chain_client):
    # a window of 61 blocks (6 s at 100 ms blocks): a reveal sent once it opens lands inside it
    netuid = await new_subnet(cli, tempo=60, weights_rate_limit=0, commit_reveal_weights_enabled=1)
    await register(cli, netuid, "Bob", "validator")
    await register(cli, netuid, "Eve", "miner")
    await ok(cli, "stake", "add", "--dev", "Bob", "--wallet.hotkey", "validator", "--amount", "100")
    signer = ("--netuid", str(netuid), "--dev", "Bob", "--wallet.hotkey", "validator")
    refused(await cli("weights", "set", *signer, "--uids", "1", "--weights", "1"),
            "FAILED_PRECONDITION", "uses commit-reveal")
    c = await ok(cli, "weights", "commit", *signer, "--uids", "0,1", "--weights", "0.25,1")
    assert len(c["salt"]) == 8 and c["weights_u16"] == [16384, 65535]
    assert c["last_reveal_block"] - c["first_reveal_block"] == 60 and c["first_reveal_block"] > c["commit_block"]
    m = await ok(cli, "subnets", "metagraph", "--netuid", str(netuid))
    assert m["neurons"][0]["commits"] == [{k: c[k] for k in ("commit_hash", "commit_block", "first_reveal_block",
                                                            "last_reveal_block")}]
    salt = ",".join(map(str, c["salt"]))
    refused(await cli("weights", "reveal", *signer, "--uids", "0,1", "--weights", "0.5,1", "--salt", salt),
            "FAILED_PRECONDITION", "match none")
    while (await chain_client.info()).head_number + 1 < c["first_reveal_block"]:
        await asyncio.sleep(0.05)
    r = await ok(cli, "weights", "reveal", *signer, "--uids", "0,1", "--weights", "0.25,1", "--salt", salt)
    assert c["first_reveal_block"] <= r["block"] <= c["last_reveal_block"] and r["uid"] == 0
    m = await ok(cli, "subnets", "metagraph", "--netuid", str(netuid), "--weights")
    assert m["neurons"][0]["weights"] == [[0, 16384], [1, 65535]] and m["neurons"][0]["commits"] == []
