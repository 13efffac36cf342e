"""Fuzzing with hypothesis: the extrinsic decoder and the miner's request path.

The decoder (services.chain.extrinsics) gets arbitrary bytes, arbitrary but well-typed payloads that
are correctly signed (so every call's own checks run), and byte-mutated valid extrinsics: it returns
a checked extrinsic or raises an AgoraError that maps to a deliberate status, nothing else.

The miner (a real one, the echo toy, over gRPC) gets arbitrary bytes, arbitrary requests unsigned,
signed and with a random envelope, and byte-mutated signed requests: every answer is a deliberate
status, and the model runs only for a request it answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from bittensor_wallet import Keypair
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agora.chain.v1 import chain_pb2
from agora.miner.v1 import miner_pb2
from services.chain import client as calls
from services.chain.extrinsics import CheckedExtrinsic, check_extrinsic, decode_payload
from services.chain.subnets import NetworkParams
from services.common import keys
from services.common.error_mapping import status_code_for
from services.common.errors import AgoraError
from services.miner import auth, toys
from services.miner.main import Miner, MinerSettings
from tests.bad_input import UNDELIBERATE, send

CHAIN_ID = bytes(range(32))
FEE = 125_000
SIGNERS = [keys.dev_keypair(n) for n in ("Alice", "Bob", "fuzz-hotkey")]
ADDRESSES = [k.ss58_address for k in SIGNERS]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MINER_KEY = keys.dev_keypair("fuzz-miner")
CALLER = keys.dev_keypair("fuzz-validator")
MINER_METHODS = {"Info": miner_pb2.InfoRequest, "NextWord": miner_pb2.NextWordRequest,
                 "Generate": miner_pb2.GenerateRequest}


# ---- strategies: any message of a type, from its descriptor ----

def _scalar(f: FieldDescriptor) -> st.SearchStrategy:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        # addresses half the time, so the checks behind the address check are reached too
        return st.one_of(st.sampled_from(ADDRESSES), st.text(max_size=80), st.text(min_size=60, max_size=300))
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.just(CHAIN_ID), st.binary(max_size=80))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-(2**31), 2**31 - 1)   # proto3 enums are open: any int32 arrives
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.integers(0, 70_000), st.integers(0, 2**32 - 1))
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    return st.one_of(st.integers(0, 10**10), st.integers(0, 2**64 - 1))


def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy:
    """Any message of type `desc`: each field set or not, a oneof member or none, lists short."""
    cls = message_factory.GetMessageClass(desc)
    optional: dict[str, st.SearchStrategy] = {}
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 4:
                continue
            value = messages(f.message_type, depth + 1)
        else:
            value = _scalar(f)
        optional[f.name] = st.lists(value, max_size=12) if f.is_repeated else value
    oneofs = [[f.name for f in o.fields] for o in desc.oneofs]
    one_per_oneof = [st.sampled_from([None, *names]) for names in oneofs]

    def build(kw: dict, chosen: list[str | None]) -> object:
        for names, keep in zip(oneofs, chosen, strict=True):
            for name in names:
                if name != keep:
                    kw.pop(name, None)
        return cls(**kw)

    return st.builds(build, st.fixed_dictionaries({}, optional=optional), st.tuples(*one_per_oneof).map(list))


def _mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, blob in edits:
        at = at % (len(out) + 1)
        if kind == "flip" and at < len(out):
            out[at] ^= blob[0] if blob and blob[0] else 0x01
        elif kind == "insert":
            out[at:at] = blob
        elif kind == "delete":
            del out[at:at + max(1, len(blob))]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


edits = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10_000),
                           st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


# ---- the extrinsic decoder ----

def checked_or_refused(xt: chain_pb2.Extrinsic) -> CheckedExtrinsic | AgoraError:
    """check_extrinsic's result, or the AgoraError it raised; anything else fails the test."""
    try:
        checked = check_extrinsic(xt, CHAIN_ID, FEE, NetworkParams())
    except AgoraError as exc:
        assert status_code_for(exc) not in UNDELIBERATE, (type(exc), exc)
        event(f"refused: {type(exc).__name__}")   # --hypothesis-show-statistics: which checks were reached
        return exc
    event(f"checked: {checked.call_name}")
    return checked


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_payload_bytes_decode_or_are_invalid_argument(data: bytes):
    try:
        decode_payload(data)
    except AgoraError as exc:
        assert status_code_for(exc) is grpc.StatusCode.INVALID_ARGUMENT


@FUZZ
@given(st.binary(max_size=2048), st.binary(max_size=96))
def test_arbitrary_extrinsic_bytes_are_refused_with_a_deliberate_code(payload: bytes, signature: bytes):
    assert isinstance(checked_or_refused(chain_pb2.Extrinsic(payload=payload, signature=signature)), AgoraError)


def _call(name: str) -> st.SearchStrategy:
    kind = chain_pb2.Call.DESCRIPTOR.fields_by_name[name].message_type
    return messages(kind).map(lambda m: chain_pb2.Call(**{name: m}))


# Any call, in an envelope that is usually right (signer, chain, no tip) so the call's own checks are
# reached; sampled_from rather than one_of, whose branches hypothesis does not draw evenly.
payloads = st.builds(
    chain_pb2.ExtrinsicPayload,
    signer=st.sampled_from([*ADDRESSES, *ADDRESSES, "", "5Grw"]),
    nonce=st.integers(0, 2**64 - 1),
    chain_id=st.sampled_from([CHAIN_ID, CHAIN_ID, CHAIN_ID, b"", bytes(32)]),
    call=st.sampled_from([f.name for f in chain_pb2.Call.DESCRIPTOR.fields]).flatmap(_call),
    tip=st.sampled_from([0, 0, 0, 1, 2**64 - 1]),
)


@FUZZ
@given(st.one_of(payloads, messages(chain_pb2.ExtrinsicPayload.DESCRIPTOR)), st.sampled_from(SIGNERS))
def test_any_correctly_signed_payload_is_checked_or_refused_never_crashes(payload, fallback: Keypair):
    # signed by the key it names when that is one of ours: the call's own checks run, not just the signature's
    signer = next((k for k in SIGNERS if k.ss58_address == payload.signer), fallback)
    data = payload.SerializeToString()
    result = checked_or_refused(chain_pb2.Extrinsic(payload=data, signature=signer.sign(data)))
    if isinstance(result, CheckedExtrinsic):
        assert result.signer == payload.signer == signer.ss58_address and payload.chain_id == CHAIN_ID


VALID_CALLS = [
    calls.transfer_call(ADDRESSES[1], 10),
    calls.register_network_call("next-token", "fuzz", ADDRESSES[2]),
    calls.set_hyperparameter_call(1, "tempo", 1_000),
    calls.burned_register_call(1, ADDRESSES[2]),
    calls.serve_axon_call(1, "127.0.0.1", 8091),
    calls.add_stake_call(ADDRESSES[2], 10),
    calls.remove_stake_call(ADDRESSES[2], 10),
    chain_pb2.Call(set_delegate_take=chain_pb2.SetDelegateTake(hotkey=ADDRESSES[2], take=100)),
    chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=1, uids=[0, 1], weights=[1, 2])),
    chain_pb2.Call(root_register=chain_pb2.RootRegister(hotkey=ADDRESSES[2])),
    chain_pb2.Call(set_root_weights=chain_pb2.SetRootWeights(netuids=[1], weights=[1])),
    calls.commit_weights_call(1, bytes(range(32))),
    calls.reveal_weights_call(1, [0, 1], [1, 2], [5, 6, 7]),
]


def test_every_call_kind_has_a_valid_example_to_mutate():
    kinds = {f.name for f in chain_pb2.Call.DESCRIPTOR.oneofs_by_name["call"].fields}
    assert {c.WhichOneof("call") for c in VALID_CALLS} == kinds
    for call in VALID_CALLS:   # raises if any is refused
        check_extrinsic(calls.sign_extrinsic(SIGNERS[0], 0, CHAIN_ID, call), CHAIN_ID, FEE, NetworkParams())


@FUZZ
@given(st.sampled_from(VALID_CALLS), edits, st.booleans())
def test_mutated_valid_extrinsics_are_checked_or_refused_never_crash(call, changes, resign: bool):
    xt = calls.sign_extrinsic(SIGNERS[0], 0, CHAIN_ID, call)
    payload = _mutate(xt.payload, changes)
    signature = SIGNERS[0].sign(payload) if resign else xt.signature
    result = checked_or_refused(chain_pb2.Extrinsic(payload=payload, signature=signature))
    if not resign and payload != xt.payload:
        assert isinstance(result, AgoraError)   # a changed payload never passes under the old signature


# ---- the miner's request path ----

@pytest.fixture(scope="module")
async def miner() -> AsyncIterator[Miner]:
    m = Miner(MinerSettings(netuid=1, task="next-token", model="echo", host="127.0.0.1", port=0, metrics_port=None,
                            max_wait_ms=1, warm_up=False),
              hotkey=MINER_KEY, stake_of={CALLER.ss58_address: 10**9}.get, loader=toys.Echo)
    await m.start()
    await m.ready()
    yield m
    await m.stop()


async def call_miner(miner: Miner, method: str, payload: bytes) -> grpc.StatusCode:
    from grpc import aio

    async with aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel:
        outcome = await send(channel, auth.method_path(method), payload, streaming=False)
    assert outcome.code not in UNDELIBERATE, (method, outcome)
    event(f"{method}: {outcome.code.name}")
    return outcome.code


@FUZZ
@given(st.sampled_from(sorted(MINER_METHODS)), st.binary(max_size=1024))
async def test_arbitrary_bytes_to_the_miner_are_refused_before_the_model(miner: Miner, method: str, data: bytes):
    before = miner.model_calls
    code = await call_miner(miner, method, data)
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED)
    assert miner.model_calls == before


requests = st.sampled_from(sorted(MINER_METHODS)).flatmap(
    lambda name: st.tuples(st.just(name), messages(MINER_METHODS[name].DESCRIPTOR)))


@FUZZ
@given(requests, st.sampled_from(["as generated", "signed"]))
async def test_any_request_gets_a_deliberate_code_and_unsigned_ones_never_reach_the_model(
        miner: Miner, named_request, how: str):
    method, request = named_request
    if how == "signed":
        auth.sign_request(CALLER, auth.method_path(method), request, MINER_KEY.ss58_address)
    before = miner.model_calls
    code = await call_miner(miner, method, request.SerializeToString())
    if how == "as generated":   # a random envelope: nothing a caller could have signed
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), code
    called = miner.model_calls - before
    assert called == 0 or (code is grpc.StatusCode.OK and called == 1 and method != "Info")


TEMPLATES = {"Info": miner_pb2.InfoRequest(), "NextWord": miner_pb2.NextWordRequest(prefixes=["Hello there"]),
             "Generate": miner_pb2.GenerateRequest(prompt="Once upon a time", max_tokens=4)}


@FUZZ
@given(st.sampled_from(sorted(TEMPLATES)), edits)
async def test_byte_mutated_signed_requests_are_refused_before_the_model(miner: Miner, method: str, changes):
    request = type(TEMPLATES[method])()
    request.CopyFrom(TEMPLATES[method])
    auth.sign_request(CALLER, auth.method_path(method), request, MINER_KEY.ss58_address)
    data = request.SerializeToString()
    mutated = _mutate(data, changes)
    before = miner.model_calls
    code = await call_miner(miner, method, mutated)
    assert miner.model_calls - before <= (1 if code is grpc.StatusCode.OK else 0)
    if code is grpc.StatusCode.OK:
        # only a change the signature does not cover can be answered: the request reads the same
        parsed = type(request).FromString(mutated)
        assert (parsed.auth.signature, auth.body_hash(parsed)) == (request.auth.signature, auth.body_hash(request))
