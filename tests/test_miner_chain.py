"""The miner on a real chain: registration check, serve_axon, and who may call it (the metagraph cache).

A real chain node on the session's Redis (tests/conftest.py), 100 ms blocks; the `echo` toy model,
so nothing heavy loads. Every refusal is checked to have cost no model call (Engine.calls).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from bittensor_wallet import Keypair
from grpc import aio

from agora.chain.v1 import chain_pb2
from agora.miner.v1 import miner_pb2, miner_pb2_grpc
from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.main import ChainNode
from services.chain.subnets import NetworkParams
from services.cli.main import build_parser
from services.common import keys
from services.common.cache import cache_dir
from services.common.redis_server import free_port
from services.miner import auth, sources
from services.miner.client import MinerClient
from services.miner.main import Miner, MinerSettings
from services.miner.metagraph import MetagraphCache, permitted_stakes
from services.miner.subnet import NotRegistered, published_endpoint, register_command
from tests.conftest import chain_settings

TAO = 10**9
ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (keys.dev_keypair(n) for n in keys.DEV_ACCOUNTS)
OWNER_HK = keys.dev_keypair("subnet-owner-hotkey")
MINER_HK = keys.dev_keypair("miner-hotkey")
V1 = keys.dev_keypair("validator-1")        # coldkey Charlie
V2 = keys.dev_keypair("validator-2")        # coldkey Dave
UNSTAKED = keys.dev_keypair("no-stake")     # coldkey Ferdie: registered, never staked
NEWCOMER = keys.dev_keypair("newcomer")     # coldkey Eve: takes V1's uid on a full subnet
NEXT_WORD = auth.method_path("NextWord")
PROMPT = ["The capital of France is"]

_SCRIPT = Path(sys.executable).with_name("agora")
AGORA = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "services.cli.main"]


# ---- helpers ----

async def ok(client: ChainClient, signer: Keypair, call: chain_pb2.Call) -> chain_pb2.ExtrinsicStatus:
    status = (await client.call(signer, call)).status
    assert status.state == chain_pb2.ExtrinsicStatus.INCLUDED and status.success, status
    return status


async def new_subnet(client: ChainClient, **hyperparameters: int) -> int:
    before = {s.netuid for s in await client.subnets()}
    await ok(client, ALICE, calls.register_network_call("next-token", "text", OWNER_HK.ss58_address))
    (netuid,) = {s.netuid for s in await client.subnets()} - before
    for name, value in hyperparameters.items():
        await ok(client, ALICE, calls.set_hyperparameter_call(netuid, name, value))
    return netuid


async def register(client: ChainClient, coldkey: Keypair, hotkey: Keypair, netuid: int, stake_tao: int = 0) -> None:
    await ok(client, coldkey, calls.burned_register_call(netuid, hotkey.ss58_address))
    if stake_tao:
        await ok(client, coldkey, calls.add_stake_call(hotkey.ss58_address, stake_tao * TAO))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        await asyncio.sleep(every)


def target(node: ChainNode) -> str:
    return f"127.0.0.1:{node.server.port}"


def miner_settings(node: ChainNode, netuid: int, **overrides: object) -> MinerSettings:
    base: dict = dict(netuid=netuid, chain=target(node), model="echo", host="127.0.0.1", port=0, metrics_port=None,
                      wallet_name="ops", wallet_hotkey="miner-1", max_wait_ms=2, warm_up=False)
    base.update(overrides)
    return MinerSettings(**base)


class Caller:
    """Signed NextWord calls to one miner, counting the ones it answered."""

    def __init__(self, miner: Miner) -> None:
        self.miner = miner
        self.served = 0
        self._channel: aio.Channel | None = None

    @property
    def channel(self) -> aio.Channel:
        if self._channel is None:   # the port is known once the miner has started
            self._channel = aio.insecure_channel(f"127.0.0.1:{self.miner.port}")
        return self._channel

    async def code(self, keypair: Keypair, *, forge: bool = False) -> grpc.StatusCode:
        request = miner_pb2.NextWordRequest(prefixes=PROMPT, top_k=3)
        auth.sign_request(keypair, NEXT_WORD, request, self.miner.hotkey.ss58_address)
        if forge:   # one bit of the signature flipped: same caller, same body, not its signature
            request.auth.signature = bytes([request.auth.signature[0] ^ 1]) + request.auth.signature[1:]
        try:
            await miner_pb2_grpc.MinerStub(self.channel).NextWord(request, timeout=10)
        except aio.AioRpcError as exc:
            return exc.code()
        self.served += 1
        return grpc.StatusCode.OK

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


# ---- pure parts ----

def _metagraph(*rows: tuple[str, int, bool]) -> chain_pb2.Metagraph:
    m = chain_pb2.Metagraph(netuid=1, block=10)
    for uid, (hotkey, stake, permit) in enumerate(rows):
        m.neurons.add(uid=uid, hotkey=hotkey, stake=stake, validator_permit=permit)
    return m


def test_permitted_mirrors_the_chains_set_weights_rule():
    # no permit anywhere yet (before the first epoch): every registered hotkey with stake
    assert permitted_stakes(_metagraph(("a", 5, False), ("b", 0, False), ("c", 7, False))) == {"a": 5, "c": 7}
    # once permits exist: permit holders only, and only while they hold stake
    assert permitted_stakes(_metagraph(("a", 5, True), ("b", 9, False), ("c", 0, True))) == {"a": 5}
    assert permitted_stakes(_metagraph()) == {}


async def test_refresh_triggers():
    # async: a grpc.aio channel needs a running loop, even one that is never used
    cache = MetagraphCache(ChainClient("127.0.0.1:1"), 1, refresh_blocks=5)
    cache.block, cache._uids = 100, {"v": 0}

    def block(number: int, *events: tuple[str, dict[str, str]]) -> chain_pb2.Block:
        b = chain_pb2.Block(header=chain_pb2.BlockHeader(number=number))
        for name, attributes in events:
            b.events.add(name=name, attributes=attributes)
        return b

    assert not cache.needs_refresh(block(101))
    assert not cache.needs_refresh(block(101, ("Emission", {"netuid": "1"}), ("WeightsSet", {"netuid": "1"})))
    assert cache.needs_refresh(block(101, ("EpochRun", {"netuid": "1"})))
    assert not cache.needs_refresh(block(101, ("EpochRun", {"netuid": "2"})))
    assert cache.needs_refresh(block(101, ("NeuronRegistered", {"netuid": "1", "hotkey": "x"})))
    assert cache.needs_refresh(block(101, ("StakeRemoved", {"hotkey": "v", "amount": "1"})))
    assert not cache.needs_refresh(block(101, ("StakeAdded", {"hotkey": "elsewhere", "amount": "1"})))
    assert cache.needs_refresh(block(105))                                       # every refresh_blocks
    assert not cache.needs_refresh(block(100, ("EpochRun", {"netuid": "1"})))    # the last read saw it
    await cache.client.close()


def test_published_endpoint_and_register_command(monkeypatch):
    monkeypatch.delenv("AGORA_WALLET_PATH", raising=False)
    monkeypatch.delenv("AGORA_CHAIN", raising=False)
    s = MinerSettings(netuid=3, chain="127.0.0.1:50051", host="0.0.0.0", port=8091, wallet_name="w",
                      wallet_hotkey="h")
    assert published_endpoint(s, 8091) == ("127.0.0.1", 8091)   # the address towards the chain
    k8s = MinerSettings(host="0.0.0.0", axon_host="agora-miner-1.agora.svc", axon_port=443)
    assert published_endpoint(k8s, 8091) == ("agora-miner-1.agora.svc", 443)
    assert register_command(s) == "agora subnets register --netuid 3 --wallet.name w --wallet.hotkey h"
    other = MinerSettings(netuid=3, chain="chain:50051", wallet_name="w", wallet_hotkey="h", wallet_path="/keys")
    assert register_command(other) == ("agora subnets register --netuid 3 --wallet.name w --wallet.hotkey h "
                                       "--wallet.path /keys --chain chain:50051")


def test_cli_flags_and_environment(monkeypatch):
    monkeypatch.setenv("AGORA_MINER_PORT", "9000")
    monkeypatch.setenv("AGORA_AXON_HOST", "miner.example.svc")
    monkeypatch.setenv("AGORA_AXON_PORT", "443")
    args = build_parser().parse_args(["miner", "start", "--netuid", "2", "--wallet.name", "w", "--wallet.hotkey",
                                      "h", "--model", "echo", "--axon.port", "8099"])
    assert (args.port, args.host, args.axon_host, args.axon_port, args.metrics_port) == (
        8099, "0.0.0.0", "miner.example.svc", 443, 9101)
    assert build_parser().parse_args(["miner", "start", "--netuid", "2", "--wallet-name", "w", "--model", "x"]
                                     ).port == 9000


def test_cache_dir_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and sources.models_dir() == tmp_path / "c" / "models"
    monkeypatch.setenv("AGORA_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("data") == tmp_path / "xdg" / "agora" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "agora"


# ---- on a chain ----

async def test_miner_refuses_to_start_unregistered_then_serves_only_staked_validators(chain, client):
    # a full subnet of 4 uids with no immunity, so a fifth registration replaces the oldest uid
    netuid = await new_subnet(client, max_allowed_uids=4, immunity_period=0)
    with pytest.raises(NotRegistered) as refused:
        await Miner.connect(miner_settings(chain, netuid), hotkey=MINER_HK)
    assert f"agora subnets register --netuid {netuid} --wallet.name ops --wallet.hotkey miner-1" in str(refused.value)

    await register(client, CHARLIE, V1, netuid, stake_tao=100)     # uid 0
    await register(client, DAVE, V2, netuid, stake_tao=50)         # uid 1
    await register(client, FERDIE, UNSTAKED, netuid)               # uid 2
    await register(client, BOB, MINER_HK, netuid)                  # uid 3
    miner = await Miner.connect(miner_settings(chain, netuid), hotkey=MINER_HK)
    caller = Caller(miner)
    try:
        await miner.start()
        await miner.ready()
        assert miner.settings.task == "next-token"     # from the subnet
        axon = (await client.metagraph(netuid)).neurons[3].axon
        assert (axon.host, axon.port, axon.protocol) == ("127.0.0.1", miner.port, "grpc")

        assert await caller.code(V1) == grpc.StatusCode.OK
        assert await caller.code(V2) == grpc.StatusCode.OK
        assert await caller.code(EVE) == grpc.StatusCode.PERMISSION_DENIED         # not registered
        assert await caller.code(UNSTAKED) == grpc.StatusCode.PERMISSION_DENIED    # registered, no stake
        assert await caller.code(MINER_HK) == grpc.StatusCode.OK                   # itself (agora miner info)
        assert await caller.code(V1, forge=True) == grpc.StatusCode.UNAUTHENTICATED
        assert miner.model_calls == caller.served == 3

        # V2's stake removed: refused within a few blocks of the block that removed it
        removed = await ok(client, DAVE, calls.remove_stake_call(V2.ss58_address, 50 * TAO))

        async def v2_refused() -> bool:
            return await caller.code(V2) == grpc.StatusCode.PERMISSION_DENIED

        await eventually(v2_refused)
        assert (await client.info()).head_number - removed.block_number <= 3

        # V1 deregistered: a newcomer takes uid 0 (the oldest, all pruning scores equal)
        replaced = await ok(client, EVE, calls.burned_register_call(netuid, NEWCOMER.ss58_address))

        async def v1_refused() -> bool:
            return await caller.code(V1) == grpc.StatusCode.PERMISSION_DENIED

        await eventually(v1_refused)
        assert (await client.info()).head_number - replaced.block_number <= 3
        assert miner.link is not None and miner.link.metagraph.uid_of(V1.ss58_address) is None
        assert miner.model_calls == caller.served      # no refusal reached the model
    finally:
        await caller.close()
        await miner.stop()


@pytest.fixture
async def fast_epochs(redis_server) -> AsyncIterator[ChainNode]:
    node = ChainNode(chain_settings(redis_server, economics=NetworkParams(min_tempo=1)))
    await node.start()
    yield node
    await node.stop()


async def test_after_an_epoch_only_validator_permit_holders_are_served(fast_epochs):
    async with ChainClient(target(fast_epochs)) as client:
        netuid = await new_subnet(client, tempo=10_000, max_allowed_validators=1)
        await register(client, CHARLIE, V1, netuid, stake_tao=100)
        await register(client, DAVE, V2, netuid, stake_tao=10)
        await register(client, BOB, MINER_HK, netuid)
        miner = await Miner.connect(miner_settings(fast_epochs, netuid), hotkey=MINER_HK)
        caller = Caller(miner)
        try:
            await miner.start()
            await miner.ready()
            # no permits yet: both staked validators may call
            assert await caller.code(V1) == grpc.StatusCode.OK
            assert await caller.code(V2) == grpc.StatusCode.OK
            await ok(client, ALICE, calls.set_hyperparameter_call(netuid, "tempo", 5))

            async def epoch_seen() -> bool:
                m = miner.link.metagraph.metagraph if miner.link else None
                return m is not None and m.last_epoch_block > 0

            await eventually(epoch_seen)
            m = await client.metagraph(netuid)
            assert [n.validator_permit for n in m.neurons] == [True, False, False]
            assert await caller.code(V1) == grpc.StatusCode.OK
            assert await caller.code(V2) == grpc.StatusCode.PERMISSION_DENIED   # staked, but no permit
            assert miner.model_calls == caller.served == 3
        finally:
            await caller.close()
            await miner.stop()


# ---- the CLI ----

async def run_agora(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*AGORA, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def save_hotkey(wallets: Path, name: str, hotkey: str, keypair: Keypair) -> None:
    with keys.quiet_stdout():
        keys.wallet(name, hotkey, wallets).set_hotkey(keypair, encrypt=False, overwrite=True)


async def test_cli_start_refuses_unregistered_then_serves_and_info_checks_it(chain, client, tmp_path):
    wallets = tmp_path / "wallets"
    save_hotkey(wallets, "ops", "miner-1", MINER_HK)
    save_hotkey(wallets, "val", "default", V1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGORA_", "BT_"))}
    env |= {"AGORA_CHAIN": target(chain), "HOME": str(tmp_path), "AGORA_WALLET_PATH": str(wallets),
            "AGORA_CACHE_DIR": str(tmp_path / "cache")}
    netuid = await new_subnet(client)
    port = free_port()
    start = ["miner", "start", "--netuid", str(netuid), "--wallet.name", "ops", "--wallet.hotkey", "miner-1",
             "--model", "echo", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]

    code, _, err = await run_agora(*start, env=env)
    assert code == 1 and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: FAILED_PRECONDITION: ")
    assert line.endswith(f"agora subnets register --netuid {netuid} --wallet.name ops --wallet.hotkey miner-1")

    await register(client, CHARLIE, V1, netuid, stake_tao=10)
    await register(client, BOB, MINER_HK, netuid)
    proc = await asyncio.create_subprocess_exec(*AGORA, *start, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    try:
        async def published() -> bool:
            assert proc.returncode is None, (await proc.stderr.read()).decode()   # type: ignore[union-attr]
            m = await client.metagraph(netuid)
            return m.neurons[1].HasField("axon") and m.neurons[1].axon.port == port

        await eventually(published, seconds=60, every=0.2)
        info = ["miner", "info", "--endpoint", f"127.0.0.1:{port}", "--wallet.name", "val", "--json"]

        async def info_ready() -> bool:
            code, out, err = await run_agora(*info, env=env)
            assert code == 0, err
            return json.loads(out)["ready"]

        await eventually(info_ready, seconds=30, every=0.2)
        code, out, _ = await run_agora(*info, env=env)
        data = json.loads(out)
        assert (data["hotkey"], data["netuid"], data["uid"], data["task"], data["model"]) == (
            MINER_HK.ss58_address, netuid, 1, "next-token", "echo")
        assert data["methods"] == ["NextWord", "Generate"]

        save_hotkey(wallets, "stranger", "default", keys.dev_keypair("stranger"))
        code, _, err = await run_agora("miner", "info", "--endpoint", f"127.0.0.1:{port}", "--wallet.name",
                                       "stranger", env=env)
        assert code == 1 and err.startswith("error: PERMISSION_DENIED: the miner at"), err
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err_bytes.decode()[-2000:]


async def test_miner_client_stays_compatible_with_a_chain_miner(chain, client):
    """MinerClient (what validators use) against a chain-wired miner, response signatures checked."""
    netuid = await new_subnet(client)
    await register(client, CHARLIE, V1, netuid, stake_tao=1)
    await register(client, BOB, MINER_HK, netuid)
    miner = await Miner.connect(miner_settings(chain, netuid), hotkey=MINER_HK)
    try:
        await miner.start()
        await miner.ready()
        async with MinerClient(f"127.0.0.1:{miner.port}", V1, MINER_HK.ss58_address) as c:
            assert (await c.info()).netuid == netuid
            words = await c.next_word(["Hello brave new world"], 2)
            assert [w for w, _ in words[0]] == [" world", " new"]
    finally:
        await miner.stop()
