"""Bad input for every gRPC method of every Agora service, and a network to send it to.

Cases are built from each method's request descriptor, so a new method or field is covered without
a change here: corrupt wire bytes, a wrong wire type per field, empty and oversized fields, a
message past the server's size limit, unknown enum values, huge repeated fields and invalid UTF-8 in
string fields. Each is a mutation of a well-formed request (appended bytes: for a singular field the
last occurrence wins and a nested message merges, so one field is replaced and the rest stays valid).
Extrinsics inside requests get the same treatment one level down: the payload is mutated, then
signed, so the call's own checks are reached rather than the signature's.

Used by tests/test_reliability_input.py and bench/reliability_input.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bittensor_wallet import Keypair
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.chain.v1 import chain_pb2
from agora.miner.v1 import miner_pb2
from agora.validator.v1 import validator_pb2
from services.chain import client as calls
from services.chain.ledger.digest import state_digest
from services.chain.local import LocalChain
from services.chain.main import ChainNode
from services.chain.settings import ChainSettings, dev_balances
from services.chain.subnets import NetworkParams
from services.common import keys
from services.miner import auth, toys
from services.miner.main import Miner, MinerSettings
from services.validator.datasets import load_task_data
from services.validator.items import Task
from services.validator.main import Validator, ValidatorSettings

CATEGORIES = ("malformed", "wrong_wire_type", "empty", "oversized", "past_limit", "unknown_enum", "huge_batch",
              "invalid_utf8")
# A refusal must say why; these say the server failed, hung or went away.
UNDELIBERATE = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
                          grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                          grpc.StatusCode.UNAVAILABLE})

VARINT, I64, LEN, I32 = 0, 1, 2, 5
OVERSIZE_BYTES = 1 << 20              # well past every field's limit, well below the message limit
HUGE_BATCHES = (2_000, 100_000)       # within the chain's batch limit (items refused one by one), and past it
MAX_DEPTH = 3                         # request -> auth/payment/call -> a call's fields
# Each is corrupt on its own and after any well-formed message: a truncated varint, a truncated
# length-delimited field, field number 0, an unterminated group, an end-group with no start,
# wire type 7, a varint of 11 bytes, and bytes that are no tag at all.
JUNK = (b"\x08", b"\x0a\x05ab", b"\x00", b"\x0b", b"\x0c", b"\x0f\x00", b"\x80" * 10 + b"\x01", b"\xff\xff\xff")
# A lone continuation byte, a truncated two-byte sequence, an encoded surrogate, an overlong '/'.
BAD_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf")
UNKNOWN_ENUMS = (99, 2**31 - 1, -1)
STREAM_WINDOW_S = 0.5                 # a streaming call still open after this is accepted
CALL_TIMEOUT_S = 15.0

TAO = 10**9
FEE_RAO = 1_000_000
VALIDATOR = keys.dev_keypair("bad-input-validator")
PAYEE = keys.dev_keypair("bad-input-payee").ss58_address
POOR = keys.dev_keypair("bad-input-poor")              # never funded: whatever it signs is refused
OWNER_HOTKEY = keys.dev_keypair("bad-input-owner-hotkey")
MINER_HOTKEYS = {task: keys.dev_keypair(f"bad-input-miner-{task}") for task in ("next-token", "translation",
                                                                               "embedding")}
ALICE, BOB = keys.dev_keypair("Alice"), keys.dev_keypair("Bob")


# ---- the wire format ----

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1   # a negative value goes out as ten bytes of two's complement, as protobuf sends it
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def encode(number: int, wire: int, value: int | bytes) -> bytes:
    tag = varint(number << 3 | wire)
    if wire == VARINT:
        assert isinstance(value, int)
        return tag + varint(value)
    assert isinstance(value, bytes)
    if wire == LEN:
        return tag + varint(len(value)) + value
    assert len(value) == (8 if wire == I64 else 4)
    return tag + value


def nest(path: Sequence[int], inner: bytes) -> bytes:
    """`inner` as the body of the message field at `path` (field numbers from the top)."""
    for number in reversed(path):
        inner = encode(number, LEN, inner)
    return inner


_WIRE = {
    FieldDescriptor.TYPE_DOUBLE: I64, FieldDescriptor.TYPE_FIXED64: I64, FieldDescriptor.TYPE_SFIXED64: I64,
    FieldDescriptor.TYPE_FLOAT: I32, FieldDescriptor.TYPE_FIXED32: I32, FieldDescriptor.TYPE_SFIXED32: I32,
    FieldDescriptor.TYPE_STRING: LEN, FieldDescriptor.TYPE_BYTES: LEN, FieldDescriptor.TYPE_MESSAGE: LEN,
}
_SAMPLE: dict[int, int | bytes] = {VARINT: 1, I64: b"\x01" * 8, LEN: b"abc", I32: b"\x01" * 4}
_ZERO: dict[int, int | bytes] = {VARINT: 0, I64: bytes(8), LEN: b"", I32: bytes(4)}


def wire_of(f: FieldDescriptor) -> int:
    return _WIRE.get(f.type, VARINT)


def valid_wires(f: FieldDescriptor) -> set[int]:
    # a repeated number may come one by one or packed into one length-delimited field
    return {wire_of(f), LEN} if f.is_repeated else {wire_of(f)}


def _extremes(f: FieldDescriptor) -> list[tuple[str, int | bytes]]:
    wire = wire_of(f)
    if f.type == FieldDescriptor.TYPE_STRING:
        return [(f"{OVERSIZE_BYTES} characters", b"x" * OVERSIZE_BYTES)]
    if f.type == FieldDescriptor.TYPE_BYTES:
        return [(f"{OVERSIZE_BYTES} bytes", b"\xff" * OVERSIZE_BYTES)]
    if wire == VARINT:
        return [("2^64-1", 2**64 - 1), ("-1 in ten bytes", -1), ("2^32", 2**32)]
    if f.type == FieldDescriptor.TYPE_FLOAT:
        return [(name, struct.pack("<f", v)) for name, v in (("nan", float("nan")), ("inf", float("inf")),
                                                             ("-inf", float("-inf")), ("-3.4e38", -3.4e38))]
    if f.type == FieldDescriptor.TYPE_DOUBLE:
        return [(name, struct.pack("<d", v)) for name, v in (("nan", float("nan")), ("inf", float("inf")),
                                                             ("-1e308", -1e308))]
    return [("all ones", b"\xff" * (8 if wire == I64 else 4))]


def _batch(f: FieldDescriptor, n: int) -> bytes:
    if wire_of(f) == LEN:   # strings, bytes, messages: n empty elements
        return encode(f.number, LEN, b"") * n
    element = {VARINT: varint(1), I64: b"\x01" * 8, I32: b"\x01" * 4}[wire_of(f)]
    return encode(f.number, LEN, element * n)   # packed


# ---- cases ----

@dataclass(frozen=True, slots=True)
class Case:
    category: str
    label: str
    payload: bytes
    expect: grpc.StatusCode | None = None   # the one right code, where only one is right


def _parses(desc: Descriptor, payload: bytes) -> bool:
    try:
        message_factory.GetMessageClass(desc).FromString(payload)
    except DecodeError:
        return False
    return True


def mutations(desc: Descriptor, template: bytes = b"", *, max_message_bytes: int | None = None,
              path: tuple[int, ...] = (), names: tuple[str, ...] = ()) -> Iterator[Case]:
    """Every bad-input case for a message of type `desc`, each a mutation of `template` (a valid one).
    With `max_message_bytes`, one case past that limit too (RESOURCE_EXHAUSTED from gRPC itself)."""
    if not path:
        yield Case("empty", "empty message", b"")
        for junk in JUNK:
            for where, payload in (("alone", junk), ("after a valid request", template + junk)):
                # what the server's own parser takes is not malformed (upb skips some junk in empty messages)
                if (where == "alone" or template) and not _parses(desc, payload):
                    yield Case("malformed", f"{junk[:12].hex()} {where}", payload, grpc.StatusCode.INVALID_ARGUMENT)
        if max_message_bytes is not None:
            # the largest field number: unknown to every message, so only the size is wrong
            yield Case("past_limit", f"{max_message_bytes + 1024} bytes",
                       template + encode(2**29 - 1, LEN, b"\x00" * (max_message_bytes + 1024)),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
    for f in desc.fields:
        label = ".".join((*names, f.name))

        def at(inner: bytes) -> bytes:
            return template + nest(path, inner)

        for wire in sorted({VARINT, I64, LEN, I32} - valid_wires(f)):
            yield Case("wrong_wire_type", f"{label} as wire type {wire}", at(encode(f.number, wire, _SAMPLE[wire])))
        yield Case("empty", f"{label} empty", at(encode(f.number, wire_of(f), _ZERO[wire_of(f)])))
        if f.type != FieldDescriptor.TYPE_MESSAGE:
            for what, value in _extremes(f):
                yield Case("oversized", f"{label} = {what}", at(encode(f.number, wire_of(f), value)))
        if f.type == FieldDescriptor.TYPE_STRING:
            for bad in BAD_UTF8:
                yield Case("invalid_utf8", f"{label} = {bad.hex()}", at(encode(f.number, LEN, bad)),
                           grpc.StatusCode.INVALID_ARGUMENT)
        if f.type == FieldDescriptor.TYPE_ENUM:
            for value in UNKNOWN_ENUMS:
                yield Case("unknown_enum", f"{label} = {value}", at(encode(f.number, VARINT, value)))
        if f.is_repeated:
            for n in HUGE_BATCHES:
                yield Case("huge_batch", f"{label} x {n}", at(_batch(f, n)))
        if f.type == FieldDescriptor.TYPE_MESSAGE and len(path) + 1 < MAX_DEPTH:
            yield from mutations(f.message_type, template, path=(*path, f.number), names=(*names, f.name))


def signed_payload_cases(base: chain_pb2.ExtrinsicPayload, signer: Keypair) -> list[Case]:
    """Extrinsics whose payload is mutated, then signed: the signature holds, the payload is bad.
    Corrupt bytes or bad UTF-8 in a payload still make a valid Extrinsic; the chain refuses the payload."""
    out = []
    for case in mutations(chain_pb2.ExtrinsicPayload.DESCRIPTOR, base.SerializeToString(deterministic=True)):
        xt = chain_pb2.Extrinsic(payload=case.payload, signature=signer.sign(case.payload))
        out.append(Case(case.category, f"payload {case.label}", xt.SerializeToString(), case.expect))
    return out


# ---- sending ----

@dataclass(frozen=True)
class Target:
    """One server and what to send each of its methods."""

    name: str                                        # "chain", "miner", "validator": the figures' names
    address: str
    service: ServiceDescriptor
    max_message_bytes: int
    templates: Mapping[str, bytes] = field(default_factory=dict)   # method -> a well-formed request
    extra: Mapping[str, Sequence[Case]] = field(default_factory=dict)
    # method -> the same request signed afresh (None if it does not parse): reaches past the auth check
    resign: Mapping[str, Callable[[bytes], bytes | None]] = field(default_factory=dict)
    methods: frozenset[str] | None = None            # None: every method of the service
    check_response: Mapping[str, Callable[[bytes], list[str]]] = field(default_factory=dict)

    def swept_methods(self) -> list[str]:
        return [m.name for m in self.service.methods if self.methods is None or m.name in self.methods]

    def cases(self, method: str) -> list[Case]:
        template = self.templates.get(method, b"")
        desc = self.service.methods_by_name[method].input_type
        found = [*mutations(desc, template, max_message_bytes=self.max_message_bytes), *self.extra.get(method, ())]
        resign = self.resign.get(method)
        if resign is not None:
            for case in list(found):
                signed = resign(case.payload)
                if signed is not None and signed != case.payload:
                    found.append(Case(case.category, f"{case.label} (signed)", signed, case.expect))
        return found


@dataclass(frozen=True, slots=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    response: bytes | None = None


@dataclass
class SweepResult:
    tried: Counter[tuple[str, str]] = field(default_factory=Counter)      # (target, method)
    categories: Counter[str] = field(default_factory=Counter)
    codes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (target, method, code)
    failures: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)   # every refusal's message, as the caller read it

    @property
    def total(self) -> int:
        return sum(self.tried.values())

    def ok(self, target: str, method: str | None = None) -> int:
        return sum(n for (t, m, c), n in self.codes.items()
                   if t == target and c == "OK" and (method is None or m == method))


def _identity(data: bytes) -> bytes:
    return data


async def send(channel: aio.Channel, path: str, payload: bytes, *, streaming: bool,
               window_s: float = STREAM_WINDOW_S) -> Outcome:
    """Send raw request bytes; a stream still open after `window_s` counts as accepted."""
    if not streaming:
        rpc = channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
        try:
            return Outcome(grpc.StatusCode.OK, "", await rpc(payload, timeout=CALL_TIMEOUT_S))
        except aio.AioRpcError as exc:
            return Outcome(exc.code(), exc.details() or "")
    call = channel.unary_stream(path, request_serializer=_identity, response_deserializer=_identity)(
        payload, timeout=CALL_TIMEOUT_S)
    try:
        first = await asyncio.wait_for(call.read(), window_s)
    except TimeoutError:
        return Outcome(grpc.StatusCode.OK, "still streaming")   # an open subscription is an answer too
    except aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "")
    finally:
        call.cancel()
    if first is aio.EOF:
        code = await call.code()
        return Outcome(code, await call.details() or "")
    return Outcome(grpc.StatusCode.OK, "", first)


def _sample(cases: list[Case], per_category: int | None) -> list[Case]:
    if per_category is None:
        return cases
    taken: Counter[str] = Counter()
    kept = []
    for case in cases:
        taken[case.category] += 1
        if taken[case.category] <= per_category:
            kept.append(case)
    return kept


async def sweep(targets: Sequence[Target], concurrency: int = 8, per_category: int | None = None) -> SweepResult:
    """Send every case to every method (or `per_category` cases of each kind per method)."""
    result = SweepResult()
    gate = asyncio.Semaphore(concurrency)

    async def one(target: Target, channel: aio.Channel, method: str, case: Case) -> None:
        m = target.service.methods_by_name[method]
        async with gate:
            # a case with one right code waits for it: 4 MiB past the limit may take a while to refuse
            outcome = await send(channel, f"/{target.service.full_name}/{method}", case.payload,
                                 streaming=m.server_streaming,
                                 window_s=STREAM_WINDOW_S if case.expect is None else CALL_TIMEOUT_S)
        result.tried[(target.name, method)] += 1
        result.categories[case.category] += 1
        result.codes[(target.name, method, outcome.code.name)] += 1
        if outcome.code is not grpc.StatusCode.OK:
            result.details.append(outcome.details)
        where = f"{target.name} {method} [{case.category}] {case.label}"
        if outcome.code in UNDELIBERATE or (case.expect is not None and outcome.code is not case.expect):
            want = case.expect.name if case.expect else "a deliberate code"
            result.failures.append(f"{where}: {outcome.code.name} ({outcome.details[:200]}), want {want}")
        check = target.check_response.get(method)
        if outcome.response is not None and check is not None:
            result.failures += [f"{where}: {problem}" for problem in check(outcome.response)]

    for target in targets:
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 64 << 20)]
        cases = [(method, case) for method in target.swept_methods()
                 for case in _sample(target.cases(method), per_category)]
        async with aio.insecure_channel(target.address, options=options) as channel:
            await asyncio.gather(*(one(target, channel, method, case) for method, case in cases))
    return result


async def unhealthy(address: str, services: Sequence[str]) -> list[str]:
    """What is not SERVING at `address`: "" (the process) and each named service."""
    problems = []
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", *services):
            try:
                status = (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
            except aio.AioRpcError as exc:
                problems.append(f"{address} {name or '(server)'}: {exc.code().name}")
                continue
            if status != health_pb2.HealthCheckResponse.SERVING:
                shown = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                problems.append(f"{address} {name or '(server)'}: {shown}")
    return problems


def batch_item_codes(response: bytes) -> list[str]:
    """SubmitExtrinsics answers OK and refuses item by item: each item needs a deliberate code too."""
    deliberate = {c.value[0] for c in grpc.StatusCode if c not in UNDELIBERATE}
    results = chain_pb2.SubmitExtrinsicsResponse.FromString(response).results
    return [f"item {i}: code {r.code} ({r.message[:100]})" for i, r in enumerate(results) if r.code not in deliberate
            or r.code == grpc.StatusCode.OK.value[0]]   # OK would mean a bad extrinsic was queued


# ---- the network the cases are sent to ----

def _miner_resigner(method: str, miner_hotkey: str) -> Callable[[bytes], bytes | None]:
    cls = getattr(miner_pb2, miner_pb2.DESCRIPTOR.services_by_name["Miner"].methods_by_name[method].input_type.name)

    def resign(payload: bytes) -> bytes | None:
        try:
            request = cls.FromString(payload)
        except DecodeError:
            return None
        auth.sign_request(VALIDATOR, auth.method_path(method), request, miner_hotkey)
        return request.SerializeToString()

    return resign


MINER_TEMPLATES = {
    "Info": miner_pb2.InfoRequest(),
    "NextWord": miner_pb2.NextWordRequest(prefixes=["The capital of France is"], top_k=3),
    "Generate": miner_pb2.GenerateRequest(prompt="Once upon a time", max_tokens=4),
    "Translate": miner_pb2.TranslateRequest(sentences=["Hello there."], target_language="fr"),
    "Embed": miner_pb2.EmbedRequest(texts=["a sentence"]),
}


def _paragraph(i: int) -> str:
    return (f"On day {i} the heron walked slowly along the river looking for food, while the otter watched "
            f"from a distance and wondered whether winter number {i + 7} would be kind to them both.")


@dataclass
class World:
    """A chain that produces no blocks (so its state can only change through what is sent to it),
    a subnet with a staked validator, one echo miner per task, and the validator, fee charged."""

    node: ChainNode
    miners: dict[str, Miner]
    validator: Validator
    chain_id: bytes
    netuid: int

    @property
    def chain_address(self) -> str:
        return f"127.0.0.1:{self.node.server.port}"

    async def fingerprint(self) -> tuple[str, tuple[int, int, int], tuple[int, bytes]]:
        """The state digest, issuance/burned/pool size, and the head: equal before and after means
        nothing was applied and nothing was queued."""
        ledger = self.node.ledger
        return (await state_digest(ledger.redis, ledger.keys), await ledger.totals(), await ledger.head())

    @property
    def model_calls(self) -> int:
        return sum(m.model_calls for m in self.miners.values())

    async def unhealthy(self) -> list[str]:
        found = await unhealthy(self.chain_address, ["agora.chain.v1.Chain"])
        for miner in self.miners.values():
            found += await unhealthy(f"127.0.0.1:{miner.port}", ["agora.miner.v1.Miner"])
        return found + await unhealthy(f"127.0.0.1:{self.validator.port}", ["agora.validator.v1.Validator"])

    def chain_target(self) -> Target:
        transfer = calls.sign_extrinsic(POOR, 0, self.chain_id, calls.transfer_call(BOB.ss58_address, 1_000))
        payload = chain_pb2.ExtrinsicPayload(signer=POOR.ss58_address, nonce=0, chain_id=self.chain_id,
                                             call=calls.transfer_call(BOB.ss58_address, 1_000))
        signed = signed_payload_cases(payload, POOR)
        r = chain_pb2
        templates = {
            "SubmitExtrinsic": r.SubmitExtrinsicRequest(extrinsic=transfer, wait_for_inclusion=True, timeout_ms=200),
            "SubmitExtrinsics": r.SubmitExtrinsicsRequest(extrinsics=[transfer]),
            "GetAccount": r.GetAccountRequest(address=ALICE.ss58_address),
            "GetBlock": r.GetBlockRequest(number=1),
            "SubscribeBlocks": r.SubscribeBlocksRequest(from_number=1),
            "GetExtrinsicStatus": r.GetExtrinsicStatusRequest(hash=bytes(32)),
            "GetSubnet": r.GetSubnetRequest(netuid=self.netuid),
            "GetMetagraph": r.GetMetagraphRequest(netuid=self.netuid, include_weights=True, include_bonds=True),
            "GetStake": r.GetStakeRequest(coldkey=BOB.ss58_address),
        }
        wait = r.SubmitExtrinsicRequest(wait_for_inclusion=True, timeout_ms=200).SerializeToString()
        return Target(
            "chain", self.chain_address, chain_pb2.DESCRIPTOR.services_by_name["Chain"],
            self.node.server.max_message_bytes,
            templates={name: m.SerializeToString() for name, m in templates.items()},
            extra={"SubmitExtrinsic": [Case(c.category, c.label, wait + encode(1, LEN, c.payload), c.expect)
                                       for c in signed],
                   "SubmitExtrinsics": [Case(c.category, c.label, encode(1, LEN, c.payload), None) for c in signed]},
            check_response={"SubmitExtrinsics": batch_item_codes},
        )

    def miner_targets(self) -> list[Target]:
        targets = []
        for task, miner in self.miners.items():
            hotkey = miner.hotkey.ss58_address
            methods = ("Info", *miner.methods) if task == "next-token" else tuple(miner.methods)
            templates = {}
            for name in methods:
                request = type(MINER_TEMPLATES[name])()
                request.CopyFrom(MINER_TEMPLATES[name])
                auth.sign_request(VALIDATOR, auth.method_path(name), request, hotkey)
                templates[name] = request.SerializeToString()
            targets.append(Target(
                "miner", f"127.0.0.1:{miner.port}", miner_pb2.DESCRIPTOR.services_by_name["Miner"],
                miner.server.max_message_bytes, templates=templates,
                resign={name: _miner_resigner(name, hotkey) for name in methods}, methods=frozenset(methods),
            ))
        return targets

    def validator_target(self) -> Target:
        payment = calls.sign_extrinsic(POOR, 0, self.chain_id, calls.transfer_call(PAYEE, FEE_RAO))
        query = validator_pb2.QueryRequest(netuid=self.netuid, generate=validator_pb2.GenerateInput(prompt="Hello"),
                                           payment=payment, payer=POOR.ss58_address, timeout_ms=2_000)
        payload = chain_pb2.ExtrinsicPayload(signer=POOR.ss58_address, nonce=0, chain_id=self.chain_id,
                                             call=calls.transfer_call(PAYEE, FEE_RAO))
        template = query.SerializeToString()
        payments = [Case(c.category, c.label, template + encode(5, LEN, c.payload), None)
                    for c in signed_payload_cases(payload, POOR)]
        return Target(
            "validator", f"127.0.0.1:{self.validator.port}", validator_pb2.DESCRIPTOR.services_by_name["Validator"],
            self.validator.server.max_message_bytes,
            templates={"Query": template,
                       "Scores": validator_pb2.ScoresRequest(netuid=self.netuid).SerializeToString()},
            extra={"Query": payments},
        )

    def targets(self) -> list[Target]:
        return [self.chain_target(), *self.miner_targets(), self.validator_target()]


@contextlib.asynccontextmanager
async def open_world(redis_url: str, workdir: Path) -> AsyncIterator[World]:
    settings = ChainSettings(redis_url=redis_url, network=f"bad-input-{uuid.uuid4().hex[:8]}", host="127.0.0.1",
                             port=0, metrics_port=0, block_time_ms=100, genesis_balances=dev_balances(),
                             produce=False, economics=NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO))
    miners = {task: Miner(MinerSettings(netuid=1, task=task, model="echo", host="127.0.0.1", port=0,
                                        metrics_port=None, max_wait_ms=2, warm_up=False),
                          hotkey=hotkey, stake_of={VALIDATOR.ss58_address: TAO}.get, loader=toys.Echo)
              for task, hotkey in MINER_HOTKEYS.items()}
    started: list[Miner] = []
    node: ChainNode | None = None
    validator: Validator | None = None
    try:
        for miner in miners.values():
            await miner.start()
            started.append(miner)
            await miner.ready()
        # Blocks are produced here, by hand, to set the network up; the served node never produces.
        local = await LocalChain.create(settings)
        try:
            netuid, chain_id = await _set_up_subnet(local, miners["next-token"])
        finally:
            await local.close()
        node = ChainNode(settings)
        await node.start()
        workdir.mkdir(parents=True, exist_ok=True)
        data = workdir / "next-token.jsonl"
        data.write_text("".join(json.dumps({"text": _paragraph(i)}) + "\n" for i in range(24)))
        validator = Validator(
            ValidatorSettings(netuid=netuid, chain=f"127.0.0.1:{node.server.port}", port=0, metrics_port=None,
                              round_interval_s=3_600, weights_interval_blocks=10**6, fee_rao=FEE_RAO, seed=7,
                              round_items=4, timeout_s=5, attempt_timeout_s=2, query_timeout_s=5, serve_axon=False),
            hotkey=VALIDATOR, coldkey=PAYEE, data=load_task_data(Task.NEXT_TOKEN, f"jsonl:{data}"))
        await validator.start()
        # the one round it runs (the next is an hour away) asks the next-token miner: wait it out
        for _ in range(600):
            if validator.loop is not None and validator.loop.rounds >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the validator ran no round within 30 s")
        yield World(node, miners, validator, chain_id, netuid)
    finally:
        if validator is not None:
            await validator.stop()
        if node is not None:
            await node.stop()
        for miner in started:
            await miner.stop()


async def _set_up_subnet(local: LocalChain, miner: Miner) -> tuple[int, bytes]:
    async def run(signer: Keypair, call: chain_pb2.Call) -> None:
        outcome = await local.run(signer, call)
        if not outcome.ok:
            raise RuntimeError(f"setting up the network: {outcome}")

    await run(ALICE, calls.register_network_call("next-token", "bad input", OWNER_HOTKEY.ss58_address))
    netuid = max(s.netuid for s in await local.ledger.subnet_states())
    await run(BOB, calls.burned_register_call(netuid, VALIDATOR.ss58_address))
    await run(BOB, calls.add_stake_call(VALIDATOR.ss58_address, 1_000 * TAO))
    await run(BOB, calls.burned_register_call(netuid, miner.hotkey.ss58_address))
    await run(miner.hotkey, calls.serve_axon_call(netuid, "127.0.0.1", miner.port))
    return netuid, local.chain_id
