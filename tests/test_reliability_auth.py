"""Nobody is let in: forged, misdirected, replayed and stale signatures, and keys that are known but
not allowed, on every call kind of the chain, every method of the miner and the validator's paid
query. Each is refused before any state change (the chain's state digest, its totals and pool) and
before any model work (the miners' model calls).

Single cases live elsewhere (tests/test_chain_ledger.py: a forged transfer, a transfer for another
chain, nonces; tests/test_miner.py: the authenticator's own table; tests/test_miner_chain.py: stake
removed or uid lost before any epoch). Here the same tampering runs over every call kind and method,
and one gap is closed: a validator that removes its stake while it still holds a permit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from bittensor_wallet import Keypair
from google.protobuf.message import Message
from grpc import aio

from agora.chain.v1 import chain_pb2
from agora.validator.v1 import validator_pb2, validator_pb2_grpc
from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.extrinsics import check_extrinsic
from services.chain.ledger.digest import state_digest
from services.chain.local import LocalChain
from services.chain.main import ChainNode
from services.chain.settings import ChainSettings, dev_balances
from services.chain.subnets import NetworkParams
from services.common import keys
from services.common.redis_server import RedisServer
from services.miner import auth
from services.miner.main import Miner, MinerSettings
from tests.bad_input import FEE_RAO, MINER_TEMPLATES, PAYEE, POOR, VALIDATOR, World, open_world

TAO = 10**9
ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (keys.dev_keypair(n) for n in keys.DEV_ACCOUNTS)
OWNER_HK = keys.dev_keypair("auth-owner-hotkey")
OLD_HK = keys.dev_keypair("auth-old")            # coldkey Charlie; the oldest uid, lost when the subnet overflows
V_HK = keys.dev_keypair("auth-validator")        # coldkey Bob, staked: the subnet's only permit
M_HK = keys.dev_keypair("auth-miner")            # coldkey Bob, no stake, no permit
NEW_HK = keys.dev_keypair("auth-newcomer")       # coldkey Eve: fills the subnet
STRANGER_HK = keys.dev_keypair("auth-stranger")  # never registered
OTHER_CHAIN = hashlib.blake2b(b"another network", digest_size=32).digest()
CODE = grpc.StatusCode


# ---- a chain whose state only a submission could change ----

@dataclass
class Net:
    node: ChainNode
    client: ChainClient
    chain_id: bytes
    netuid: int
    applied: dict[str, chain_pb2.Extrinsic]   # extrinsics a block has applied, to replay

    async def fingerprint(self) -> tuple:
        ledger = self.node.ledger
        return await state_digest(ledger.redis, ledger.keys), await ledger.totals(), await ledger.head()

    async def nonce(self, key: Keypair) -> int:
        return (await self.client.account(key.ss58_address)).pool_nonce

    async def refusal(self, xt: chain_pb2.Extrinsic) -> aio.AioRpcError:
        """Submit; return the refusal after checking that nothing changed."""
        before = await self.fingerprint()
        try:
            await self.client.submit(xt, wait=False)
        except aio.AioRpcError as exc:
            assert await self.fingerprint() == before, f"refused ({exc.code().name}) but the state changed"
            return exc
        raise AssertionError("accepted")

    async def refused(self, xt: chain_pb2.Extrinsic) -> grpc.StatusCode:
        return (await self.refusal(xt)).code()


@pytest.fixture(scope="module")
async def net(redis_server: RedisServer) -> AsyncIterator[Net]:
    """Set up by hand with a LocalChain (blocks on demand), then served by a node that never
    produces: a refused extrinsic cannot hide in the pool until a block applies it."""
    settings = ChainSettings(redis_url=redis_server.url, network=f"auth-{time.time_ns()}", host="127.0.0.1", port=0,
                             metrics_port=None, block_time_ms=100, genesis_balances=dev_balances(), produce=False,
                             economics=NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO))
    local = await LocalChain.create(settings)
    applied: dict[str, chain_pb2.Extrinsic] = {}

    async def run(signer: Keypair, call: chain_pb2.Call, name: str | None = None) -> None:
        xt = calls.sign_extrinsic(signer, await local.nonce(signer.ss58_address), local.chain_id, call)
        checked = check_extrinsic(xt, local.chain_id, local.fee, local.ledger.params)
        await local.ledger.submit(checked, local.pool)
        await local.produce()
        outcome = await local.outcome(checked.hash)
        assert outcome.ok, (call, outcome)
        if name:
            applied[name] = xt

    try:
        await run(ALICE, calls.register_network_call("next-token", "auth", OWNER_HK.ss58_address), "register_network")
        netuid = max(s.netuid for s in await local.ledger.subnet_states())
        for name, value in (("immunity_period", 0), ("max_allowed_uids", 4), ("max_allowed_validators", 1),
                            ("target_regs_per_interval", 64), ("weights_rate_limit", 0), ("tempo", 2)):
            await run(ALICE, calls.set_hyperparameter_call(netuid, name, value))
        await run(CHARLIE, calls.burned_register_call(netuid, OLD_HK.ss58_address))                     # uid 0
        await run(BOB, calls.burned_register_call(netuid, V_HK.ss58_address))                           # uid 1
        await run(BOB, calls.add_stake_call(V_HK.ss58_address, 1_000 * TAO), "add_stake")
        await run(BOB, calls.burned_register_call(netuid, M_HK.ss58_address))                           # uid 2
        await run(V_HK, calls.serve_axon_call(netuid, "127.0.0.1", 9001), "serve_axon")
        await run(M_HK, calls.serve_axon_call(netuid, "127.0.0.1", 9002))
        await run(ALICE, calls.transfer_call(DAVE.ss58_address, 10 * TAO), "transfer")
        await local.produce(3)   # an epoch: V_HK, the only staked uid, gets the permit
        await run(ALICE, calls.set_hyperparameter_call(netuid, "tempo", 10_000))
        await run(EVE, calls.burned_register_call(netuid, NEW_HK.ss58_address))                        # uid 3
        # one more than max_allowed_uids and no immunity: the lowest pruning score, the oldest uid, goes
        await run(FERDIE, calls.burned_register_call(netuid, keys.dev_keypair("auth-late").ss58_address))
        chain_id = local.chain_id
    finally:
        await local.close()
    node = ChainNode(settings)
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    try:
        yield Net(node, client, chain_id, netuid, applied)
    finally:
        await client.close()
        await node.stop()


async def test_the_setup_left_the_keys_where_the_tables_expect_them(net: Net):
    m = await net.client.metagraph(net.netuid)
    by_hotkey = {n.hotkey: n for n in m.neurons}
    assert OLD_HK.ss58_address not in by_hotkey, "OLD_HK should have lost its uid to a newer registration"
    assert by_hotkey[V_HK.ss58_address].validator_permit and by_hotkey[V_HK.ss58_address].stake > 0
    assert not by_hotkey[M_HK.ss58_address].validator_permit
    for key in (ALICE, BOB, V_HK, M_HK):
        assert await net.nonce(key) >= 1   # so each has a nonce in the past


# ---- the chain: every call kind, every way of forging it ----

def _calls(netuid: int) -> dict[str, tuple[Keypair, chain_pb2.Call]]:
    """One call of each kind, with the key that may sign it."""
    return {
        "transfer": (ALICE, calls.transfer_call(DAVE.ss58_address, 10)),
        "register_network": (ALICE, calls.register_network_call("embedding", "auth 2", OWNER_HK.ss58_address)),
        "set_hyperparameter": (ALICE, calls.set_hyperparameter_call(netuid, "tempo", 9_000)),
        "burned_register": (BOB, calls.burned_register_call(netuid, keys.dev_keypair("auth-x").ss58_address)),
        "serve_axon": (M_HK, calls.serve_axon_call(netuid, "127.0.0.1", 9003)),
        "add_stake": (BOB, calls.add_stake_call(V_HK.ss58_address, TAO)),
        "remove_stake": (BOB, calls.remove_stake_call(V_HK.ss58_address, TAO)),
        "set_delegate_take": (BOB, chain_pb2.Call(set_delegate_take=chain_pb2.SetDelegateTake(
            hotkey=V_HK.ss58_address, take=100))),
        "set_weights": (V_HK, chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=netuid, uids=[1, 2],
                                                                               weights=[1, 1]))),
        "root_register": (BOB, chain_pb2.Call(root_register=chain_pb2.RootRegister(hotkey=V_HK.ss58_address))),
        "set_root_weights": (V_HK, chain_pb2.Call(set_root_weights=chain_pb2.SetRootWeights(netuids=[netuid],
                                                                                            weights=[1]))),
        "commit_weights": (V_HK, calls.commit_weights_call(netuid, bytes(32))),
        "reveal_weights": (V_HK, calls.reveal_weights_call(netuid, [1, 2], [1, 1], [1])),
    }


def _payload(signer: str, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> bytes:
    return chain_pb2.ExtrinsicPayload(signer=signer, nonce=nonce, chain_id=chain_id,
                                      call=call).SerializeToString(deterministic=True)


Forge = Callable[[Keypair, int, bytes, chain_pb2.Call], chain_pb2.Extrinsic]


def _signed_by_another(key: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
    data = _payload(key.ss58_address, nonce, chain_id, call)
    return chain_pb2.Extrinsic(payload=data, signature=EVE.sign(data))


def _claims_another_signer(key: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
    data = _payload(FERDIE.ss58_address, nonce, chain_id, call)
    return chain_pb2.Extrinsic(payload=data, signature=key.sign(data))


def _signature_of_other_bytes(key: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
    other = _payload(key.ss58_address, nonce + 1, chain_id, call)
    return chain_pb2.Extrinsic(payload=_payload(key.ss58_address, nonce, chain_id, call), signature=key.sign(other))


def _with_signature(edit: Callable[[bytes], bytes]) -> Forge:
    def forge(key: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
        xt = calls.sign_extrinsic(key, nonce, chain_id, call)
        return chain_pb2.Extrinsic(payload=xt.payload, signature=edit(xt.signature))
    return forge


FORGERIES: dict[str, tuple[Forge, str]] = {
    "signed by another key": (_signed_by_another, "does not match"),
    "claims another signer": (_claims_another_signer, "does not match"),
    "signature over other bytes": (_signature_of_other_bytes, "does not match"),
    "one bit of the signature flipped": (_with_signature(lambda s: bytes([s[0] ^ 1]) + s[1:]), "does not match"),
    "signature cut to 63 bytes": (_with_signature(lambda s: s[:63]), "64 bytes"),
    "no signature": (_with_signature(lambda s: b""), "64 bytes"),
    "all-zero signature": (_with_signature(lambda s: bytes(64)), "does not match"),
    "signed for another chain": (lambda k, n, c, call: calls.sign_extrinsic(k, n, OTHER_CHAIN, call), "for chain"),
    "stale nonce": (lambda k, n, c, call: calls.sign_extrinsic(k, n - 1, c, call), "already used"),
}


def test_every_call_kind_is_in_the_table():
    kinds = {f.name for f in chain_pb2.Call.DESCRIPTOR.oneofs_by_name["call"].fields}
    assert set(_calls(1)) == kinds


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_forged_signatures_of_every_call_kind_are_unauthenticated_and_change_nothing(net: Net, forgery: str):
    forge, words = FORGERIES[forgery]
    for kind, (key, call) in _calls(net.netuid).items():
        nonce = await net.nonce(key)
        honest = calls.sign_extrinsic(key, nonce, net.chain_id, call)
        # the untampered extrinsic passes every stateless check: the refusal is the forgery's doing
        check_extrinsic(honest, net.chain_id, 125_000, net.node.ledger.params)
        refusal = await net.refusal(forge(key, nonce, net.chain_id, call))
        assert refusal.code() is CODE.UNAUTHENTICATED and words in refusal.details(), (kind, refusal.details())


async def test_replayed_extrinsics_are_refused_and_change_nothing(net: Net):
    assert set(net.applied) >= {"transfer", "add_stake", "serve_axon", "register_network"}
    for kind, xt in net.applied.items():
        # as a replay, not as whatever the call's own checks would say now (a serve_axon is rate limited)
        refusal = await net.refusal(xt)
        assert refusal.code() is CODE.ALREADY_EXISTS and "already submitted" in refusal.details(), (kind, refusal)


# Correctly signed, by a key the chain knows, for something that key may not do.
UNPERMITTED: list[tuple[str, Keypair, Callable[[int], chain_pb2.Call], grpc.StatusCode]] = [
    ("a hyperparameter of someone else's subnet", BOB,
     lambda n: calls.set_hyperparameter_call(n, "tempo", 9_000), CODE.PERMISSION_DENIED),
    ("weights from a deregistered hotkey", OLD_HK,
     lambda n: chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=n, uids=[1, 2], weights=[1, 1])),
     CODE.FAILED_PRECONDITION),
    ("an axon for a deregistered hotkey", OLD_HK, lambda n: calls.serve_axon_call(n, "127.0.0.1", 9004),
     CODE.FAILED_PRECONDITION),
    ("weights from a hotkey never registered", STRANGER_HK,
     lambda n: chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=n, uids=[1, 2], weights=[1, 1])),
     CODE.FAILED_PRECONDITION),
    ("weights from a registered hotkey with no permit", M_HK,
     lambda n: chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=n, uids=[1, 2], weights=[1, 1])),
     CODE.PERMISSION_DENIED),
    ("the take of someone else's hotkey", CHARLIE,
     lambda n: chain_pb2.Call(set_delegate_take=chain_pb2.SetDelegateTake(hotkey=V_HK.ss58_address, take=1)),
     CODE.PERMISSION_DENIED),
    ("stake on someone else's hotkey that is no delegate", CHARLIE,
     lambda n: calls.add_stake_call(V_HK.ss58_address, TAO), CODE.PERMISSION_DENIED),
    ("removing stake someone else added", CHARLIE,
     lambda n: calls.remove_stake_call(V_HK.ss58_address, TAO), CODE.FAILED_PRECONDITION),
    ("registering someone else's hotkey", CHARLIE,
     lambda n: calls.burned_register_call(n, M_HK.ss58_address), CODE.PERMISSION_DENIED),
    ("putting someone else's hotkey on root", CHARLIE,
     lambda n: chain_pb2.Call(root_register=chain_pb2.RootRegister(hotkey=V_HK.ss58_address)),
     CODE.PERMISSION_DENIED),
    ("root weights from a hotkey not on root", V_HK,
     lambda n: chain_pb2.Call(set_root_weights=chain_pb2.SetRootWeights(netuids=[n], weights=[1])),
     CODE.FAILED_PRECONDITION),
]


@pytest.mark.parametrize(("what", "key", "call", "code"), UNPERMITTED, ids=[u[0] for u in UNPERMITTED])
async def test_known_but_unpermitted_keys_are_refused_at_submit_and_change_nothing(
        net: Net, what: str, key: Keypair, call: Callable[[int], chain_pb2.Call], code: grpc.StatusCode):
    xt = calls.sign_extrinsic(key, await net.nonce(key), net.chain_id, call(net.netuid))
    assert await net.refused(xt) is code


# ---- the miners and the validator, on a network that produces no blocks ----

@pytest.fixture(scope="module")
async def world(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with open_world(redis_server.url, tmp_path_factory.mktemp("auth-world")) as w:
        yield w


def _request(method: str, miner: str, *, signer: Keypair = VALIDATOR, signed_as: str | None = None,
             to: str | None = None, **kw: int) -> Message:
    request = type(MINER_TEMPLATES[method])()
    request.CopyFrom(MINER_TEMPLATES[method])
    auth.sign_request(signer, auth.method_path(signed_as or method), request, to or miner, **kw)
    return request


def _edited(method: str, miner: str, edit: Callable[[Message], None]) -> Message:
    request = _request(method, miner)
    edit(request)
    return request


def _change_body(request: Message) -> None:
    for f in request.DESCRIPTOR.fields:   # the first text field after the envelope
        if f.name != "auth" and f.type == f.TYPE_STRING:
            value = getattr(request, f.name)
            if f.is_repeated:
                value.append("and one more")
            else:
                setattr(request, f.name, value + " changed")
            return


def _swap_signature(method: str, miner: str) -> Message:
    request, other = _request(method, miner), _request(method, miner)
    request.auth.signature = other.auth.signature   # a real signature by the caller, of another request
    return request


def _now_ms() -> int:
    return int(time.time() * 1000)


MINER_FORGERIES: dict[str, Callable[[str, str], Message]] = {
    "one bit of the signature flipped": lambda m, hk: _edited(m, hk, lambda r: setattr(
        r.auth, "signature", bytes([r.auth.signature[0] ^ 1]) + r.auth.signature[1:])),
    "signed by another key that names the validator": lambda m, hk: _edited(m, hk, lambda r: setattr(
        r.auth, "signature", EVE.sign(auth.request_payload(auth.method_path(m), r.auth)))),
    "the signature of another request": _swap_signature,
    "an empty signature": lambda m, hk: _edited(m, hk, lambda r: setattr(r.auth, "signature", b"")),
    "no envelope": lambda m, hk: _edited(m, hk, lambda r: r.ClearField("auth")),
    "addressed to another miner": lambda m, hk: _request(m, hk, to=EVE.ss58_address),
    "signed for another method": lambda m, hk: _request(m, hk, signed_as="Generate" if m != "Generate" else "Info"),
    "timestamp 31 s old": lambda m, hk: _request(m, hk, timestamp_ms=_now_ms() - 31_000),
    "timestamp 6 s ahead": lambda m, hk: _request(m, hk, timestamp_ms=_now_ms() + 6_000),
    "body changed after signing": lambda m, hk: _edited(m, hk, _change_body),
}


def _served(world: World) -> list[tuple[Miner, str]]:
    return [(miner, method) for task, miner in world.miners.items()
            for method in (("Info",) if task == "next-token" else ()) + tuple(miner.methods)]


async def _miner_code(miner: Miner, method: str, request: Message) -> tuple[grpc.StatusCode, str]:
    async with aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel:
        rpc = channel.unary_unary(auth.method_path(method), request_serializer=bytes, response_deserializer=bytes)
        try:
            await rpc(request.SerializeToString(), timeout=10)
        except aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return CODE.OK, ""


@pytest.mark.parametrize("forgery", MINER_FORGERIES)
async def test_forged_requests_to_every_miner_method_are_unauthenticated_before_the_model(world: World, forgery: str):
    before = world.model_calls
    for miner, method in _served(world):
        request = MINER_FORGERIES[forgery](method, miner.hotkey.ss58_address)
        if forgery == "body changed after signing" and method == "Info":
            continue   # InfoRequest has no body to change
        code, details = await _miner_code(miner, method, request)
        assert code is CODE.UNAUTHENTICATED, (method, code, details)
    assert world.model_calls == before


async def test_a_correctly_signed_request_from_a_key_the_subnet_does_not_permit_is_refused(world: World):
    before = world.model_calls
    for miner, method in _served(world):
        code, details = await _miner_code(miner, method, _request(method, miner.hotkey.ss58_address, signer=EVE))
        assert code is CODE.PERMISSION_DENIED, (method, code, details)
    assert world.model_calls == before


async def test_a_replayed_request_or_a_reused_nonce_reaches_no_model(world: World):
    for miner, method in _served(world):
        hotkey = miner.hotkey.ss58_address
        request = _request(method, hotkey)
        before = miner.model_calls
        assert (await _miner_code(miner, method, request))[0] is CODE.OK
        served = miner.model_calls - before
        assert served == (0 if method == "Info" else 1)
        again = _edited(method, hotkey, _change_body) if method != "Info" else _request(method, hotkey)
        auth.sign_request(VALIDATOR, auth.method_path(method), again, hotkey, nonce=request.auth.nonce)
        for replay in (request, again):   # the same bytes, then a new request under the same nonce
            code, details = await _miner_code(miner, method, replay)
            assert code is CODE.UNAUTHENTICATED and "already used" in details, (method, code, details)
        assert miner.model_calls - before == served


# A paid query's payment, correctly formed but not a payment the user may make.
def _payments(chain_id: bytes) -> dict[str, tuple[Keypair, chain_pb2.Extrinsic, grpc.StatusCode]]:
    pay = calls.transfer_call(PAYEE, FEE_RAO)
    forged = calls.sign_extrinsic(POOR, 0, chain_id, pay)
    return {
        "signed by another key": (POOR, chain_pb2.Extrinsic(payload=forged.payload, signature=EVE.sign(forged.payload)),
                                  CODE.UNAUTHENTICATED),
        "signed for another chain": (POOR, calls.sign_extrinsic(POOR, 0, OTHER_CHAIN, pay), CODE.UNAUTHENTICATED),
        # Alice's nonce 0 went into registering the subnet: the chain says used, the validator a replay
        "a nonce already used": (ALICE, calls.sign_extrinsic(ALICE, 0, chain_id, pay), CODE.ALREADY_EXISTS),
        "a nonce far ahead": (ALICE, calls.sign_extrinsic(ALICE, 1_000, chain_id, pay), CODE.FAILED_PRECONDITION),
        "from an account with nothing": (POOR, forged, CODE.FAILED_PRECONDITION),
    }


@pytest.mark.parametrize("case", ["signed by another key", "signed for another chain", "a nonce already used",
                                  "a nonce far ahead", "from an account with nothing"])
async def test_bad_payments_are_refused_before_any_state_change_or_miner_call(world: World, case: str):
    payer, payment, code = _payments(world.chain_id)[case]
    before, calls_before = await world.fingerprint(), world.model_calls
    request = validator_pb2.QueryRequest(netuid=world.netuid, generate=validator_pb2.GenerateInput(prompt="Hi"),
                                         payment=payment, payer=payer.ss58_address)
    async with aio.insecure_channel(f"127.0.0.1:{world.validator.port}") as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await validator_pb2_grpc.ValidatorStub(channel).Query(request, timeout=10)
    assert err.value.code() is code, err.value.details()
    assert await world.fingerprint() == before and world.model_calls == calls_before


# ---- a validator that unstakes keeps its permit until the next epoch; miners refuse it at once ----

async def test_a_validator_that_removes_its_stake_is_refused_although_it_still_holds_a_permit(redis_server):
    settings = ChainSettings(redis_url=redis_server.url, network=f"unstake-{time.time_ns()}", host="127.0.0.1",
                             port=0, metrics_port=None, block_time_ms=100, genesis_balances=dev_balances(),
                             economics=NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO))
    node = ChainNode(settings)
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    miner: Miner | None = None
    try:
        async def run(signer: Keypair, call: chain_pb2.Call) -> None:
            status = (await client.call(signer, call)).status
            assert status.success, status

        await run(ALICE, calls.register_network_call("next-token", "unstake", OWNER_HK.ss58_address))
        netuid = max(s.netuid for s in await client.subnets())
        for name, value in (("max_allowed_validators", 1), ("target_regs_per_interval", 64), ("tempo", 3)):
            await run(ALICE, calls.set_hyperparameter_call(netuid, name, value))
        await run(CHARLIE, calls.burned_register_call(netuid, V_HK.ss58_address))
        await run(CHARLIE, calls.add_stake_call(V_HK.ss58_address, 100 * TAO))
        await run(BOB, calls.burned_register_call(netuid, M_HK.ss58_address))

        async def permit() -> bool:
            return (await client.metagraph(netuid)).neurons[0].validator_permit

        await _eventually(permit)
        await run(ALICE, calls.set_hyperparameter_call(netuid, "tempo", 10_000))   # no epoch from here on
        miner = await Miner.connect(MinerSettings(netuid=netuid, chain=f"127.0.0.1:{node.server.port}", model="echo",
                                                  host="127.0.0.1", port=0, metrics_port=None, max_wait_ms=2,
                                                  warm_up=False), hotkey=M_HK)
        await miner.start()
        await miner.ready()
        served = 0

        async def call() -> grpc.StatusCode:
            nonlocal served
            code, _ = await _miner_code(miner, "NextWord", _request("NextWord", M_HK.ss58_address, signer=V_HK))
            served += code is CODE.OK
            return code

        assert await call() is CODE.OK
        # all of it: the epochs so far have added the validator's dividends to its stake
        staked = {e.hotkey: e.amount for e in (await client.stake(CHARLIE.ss58_address)).stakes}
        await run(CHARLIE, calls.remove_stake_call(V_HK.ss58_address, staked[V_HK.ss58_address]))

        async def refused() -> bool:
            return await call() is CODE.PERMISSION_DENIED

        await _eventually(refused)
        me = (await client.metagraph(netuid)).neurons[0]
        assert me.hotkey == V_HK.ss58_address and me.validator_permit and me.stake == 0
        assert miner.model_calls == served
    finally:
        if miner is not None:
            await miner.stop()
        await client.close()
        await node.stop()


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.05)
