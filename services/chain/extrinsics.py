"""Checks that an extrinsic must pass before it is queued: decoding, signature, chain id, call.

Only what does not depend on ledger state lives here; balance, nonce and every state-dependent
check of a call run atomically in the Lua script that applies it (the ledger also runs that
script's checks at submit time, so a doomed call is refused with the right code at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message

from agora.chain.v1 import chain_pb2
from services.chain.codec import HASH_BYTES, extrinsic_hash
from services.chain.errors import RootNotAllowed, TakeOutOfRange, UidOutOfRange
from services.chain.subnets import MAX_NETUID, MAX_TAKE_U16, MAX_UIDS, ROOT_NETUID, TASK_BY_ENUM, NetworkParams
from services.chain.subnets import check_hyperparameter as _check_hyperparameter
from services.common import keys
from services.common.errors import InvalidRequest, WrongChain
from services.common.units import U16_MAX, check_amount

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_EXTRINSIC_BYTES = MAX_PAYLOAD_BYTES + 256   # payload, 64-byte signature and their field headers
MAX_NAME_CHARS = 64
MAX_HOST_CHARS = 255
MAX_PROTOCOL_CHARS = 16
# Signed by a hotkey, which holds no funds: these pay no fee (as in Bittensor), and the apply
# script's checks (registered, rate limits) are what keeps them from being spam.
HOTKEY_CALLS = frozenset({"serve_axon", "set_weights", "commit_weights", "reveal_weights", "set_root_weights"})
MAX_SALT_U16S = 32


def extrinsic_fee(call_name: str, base_fee: int) -> int:
    """Rao the signer pays (burned) for including an extrinsic of this call."""
    return 0 if call_name in HOTKEY_CALLS else base_fee


@dataclass(frozen=True, slots=True)
class CheckedExtrinsic:
    raw: bytes                       # canonical Extrinsic bytes (payload, signature): stored in pool and block
    hash: bytes
    signer: str
    nonce: int
    call_name: str                   # the `call` oneof's field name, e.g. "transfer"
    call: chain_pb2.Call
    upfront: int                     # rao the signer must hold when it is queued: fee + amount


def decode_payload(payload: bytes) -> chain_pb2.ExtrinsicPayload:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidRequest(f"extrinsic payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        decoded = chain_pb2.ExtrinsicPayload.FromString(payload)
    except DecodeError:
        raise InvalidRequest("extrinsic payload is not a valid ExtrinsicPayload message") from None
    _refuse_unknown_fields(decoded, "extrinsic payload")
    return decoded


def _refuse_unknown_fields(message: Message, what: str) -> None:
    """protobuf keeps fields it does not know and writes them back out: in a stored extrinsic they
    would be bytes nobody checked; a field of a newer version would be silently ignored."""
    known = type(message)()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    if known.ByteSize() != message.ByteSize():
        raise InvalidRequest(f"{what} carries {message.ByteSize() - known.ByteSize()} bytes of unknown fields: "
                             "this chain accepts only the fields of agora.chain.v1")


def canonical_extrinsic(xt: chain_pb2.Extrinsic) -> bytes:
    """The bytes stored in the pool and the block: only payload and signature, which the extrinsic
    hash commits to, within MAX_EXTRINSIC_BYTES. Anything else is refused, not stripped silently."""
    size = xt.ByteSize()
    if size > MAX_EXTRINSIC_BYTES:
        raise InvalidRequest(f"extrinsic is {size} bytes; the limit is {MAX_EXTRINSIC_BYTES}")
    _refuse_unknown_fields(xt, "extrinsic")
    return chain_pb2.Extrinsic(payload=xt.payload, signature=xt.signature).SerializeToString()


def check_extrinsic(
    xt: chain_pb2.Extrinsic, chain_id: bytes, fee: int, net: NetworkParams | None = None
) -> CheckedExtrinsic:
    """Decode and check a signed extrinsic; raise the AgoraError that says what is wrong.
    `fee` is the network's base fee; `net` its economic parameters (hyperparameter bounds)."""
    raw = canonical_extrinsic(xt)
    if not xt.payload:
        raise InvalidRequest("extrinsic has no payload")
    payload = decode_payload(xt.payload)
    signer = keys.check_address(payload.signer, what="signer")
    if len(payload.chain_id) != HASH_BYTES:
        raise InvalidRequest(f"chain_id must be the {HASH_BYTES}-byte genesis hash, got {len(payload.chain_id)} bytes")
    if payload.chain_id != chain_id:
        raise WrongChain(
            f"extrinsic is signed for chain {payload.chain_id.hex()[:16]}..., this chain is {chain_id.hex()[:16]}..."
        )
    if payload.tip:
        raise InvalidRequest("tip must be 0: this chain orders extrinsics first come, first served")
    call_name = payload.call.WhichOneof("call")
    if call_name is None:
        raise InvalidRequest("extrinsic has no call (or a call this chain does not know)")
    # the signature is checked last of the stateless checks: it is the expensive one
    keys.require_signature(signer, xt.payload, xt.signature)
    upfront = extrinsic_fee(call_name, fee) + _check_call(signer, call_name, payload.call, net or NetworkParams())
    return CheckedExtrinsic(
        raw=raw,
        hash=extrinsic_hash(xt.payload, xt.signature),
        signer=signer,
        nonce=payload.nonce,
        call_name=call_name,
        call=payload.call,
        upfront=upfront,
    )


def _check_call(signer: str, call_name: str, call: chain_pb2.Call, net: NetworkParams) -> int:
    """Validate the call's own fields; return the rao a transfer moves out of the signer's free
    balance (other calls report what they take when their script is checked at submit)."""
    if call_name == "transfer":
        t = call.transfer
        dest = keys.check_address(t.dest, what="destination")
        if dest == signer:
            raise InvalidRequest(f"transfer to self ({signer}) would only burn the fee")
        return check_amount(t.amount, what="transfer amount")
    checker = _CALL_CHECKS.get(call_name)
    if checker is None:
        raise InvalidRequest(f"call {call_name!r} is not supported by this chain")
    checker(getattr(call, call_name), net)
    return 0


def _check_netuid(netuid: int, *, root: bool = False) -> None:
    if netuid > MAX_NETUID:
        raise InvalidRequest(f"netuid {netuid} is out of range: 0..{MAX_NETUID}")
    if netuid == ROOT_NETUID and not root:
        raise RootNotAllowed("this call does not apply to the root subnet (netuid 0)")


def _check_text(text: str, what: str, limit: int) -> None:
    if not text or len(text) > limit or not text.isprintable():
        raise InvalidRequest(f"{what} {text[:limit]!r} must be 1..{limit} printable characters")


def _check_register_network(c: chain_pb2.RegisterNetwork, net: NetworkParams) -> None:
    if c.task not in TASK_BY_ENUM:
        raise InvalidRequest(f"task {c.task} is unknown: use one of {', '.join(TASK_BY_ENUM.values())}")
    _check_text(c.name, "subnet name", MAX_NAME_CHARS)
    keys.check_address(c.hotkey, what="owner hotkey")


def _check_set_hyperparameter(c: chain_pb2.SetHyperparameter, net: NetworkParams) -> None:
    _check_netuid(c.netuid)
    _check_hyperparameter(c.name, c.value, net)


def _check_burned_register(c: chain_pb2.BurnedRegister, net: NetworkParams) -> None:
    _check_netuid(c.netuid)
    keys.check_address(c.hotkey, what="hotkey")
    check_amount(c.max_burn, what="max_burn", allow_zero=True)


def _check_serve_axon(c: chain_pb2.ServeAxon, net: NetworkParams) -> None:
    _check_netuid(c.netuid)
    _check_text(c.host, "host", MAX_HOST_CHARS)
    if any(ch.isspace() for ch in c.host):
        raise InvalidRequest(f"host {c.host!r} contains whitespace")
    if not 1 <= c.port <= U16_MAX:
        raise InvalidRequest(f"port {c.port} is out of range: 1..{U16_MAX}")
    _check_text(c.protocol or "grpc", "protocol", MAX_PROTOCOL_CHARS)


def _check_stake(c: chain_pb2.AddStake | chain_pb2.RemoveStake, net: NetworkParams) -> None:
    keys.check_address(c.hotkey, what="hotkey")
    check_amount(c.amount, what="stake amount")


def _check_set_delegate_take(c: chain_pb2.SetDelegateTake, net: NetworkParams) -> None:
    keys.check_address(c.hotkey, what="hotkey")
    if c.take > MAX_TAKE_U16:
        raise TakeOutOfRange(f"take {c.take} is out of range: allowed 0..{MAX_TAKE_U16} (u16, {MAX_TAKE_U16} = 18%)")


def check_weight_row(targets: list[int], weights: list[int], *, what: str, limit: int) -> None:
    """A weights row: one u16 per distinct target, not all zero."""
    if len(targets) != len(weights):
        raise InvalidRequest(f"{len(targets)} {what} but {len(weights)} weights: need one weight per {what[:-1]}")
    if not 1 <= len(targets) <= limit:
        raise InvalidRequest(f"{len(targets)} {what}: need 1..{limit}")
    if len(set(targets)) != len(targets):
        raise InvalidRequest(f"{what} repeat: each may appear once")
    top = max(weights)
    if top > U16_MAX:
        raise InvalidRequest(f"weight {top} is not a u16 (0..{U16_MAX})")
    if top == 0:
        raise InvalidRequest("all weights are zero")


def _check_set_weights(c: chain_pb2.SetWeights, net: NetworkParams) -> None:
    _check_netuid(c.netuid)
    check_weight_row(list(c.uids), list(c.weights), what="uids", limit=MAX_UIDS)
    if max(c.uids) >= MAX_UIDS:
        raise UidOutOfRange(f"uid {max(c.uids)} is out of range: a subnet has at most {MAX_UIDS} uids")
    check_amount(c.version_key, what="version_key", allow_zero=True)


def _check_commit_weights(c: chain_pb2.CommitWeights, net: NetworkParams) -> None:
    _check_netuid(c.netuid)
    if len(c.commit_hash) != HASH_BYTES:
        raise InvalidRequest(f"commit_hash is {len(c.commit_hash)} bytes: need the {HASH_BYTES}-byte blake2b-256 "
                             "of the weights (agora weights commit computes it)")


def _check_reveal_weights(c: chain_pb2.RevealWeights, net: NetworkParams) -> None:
    _check_set_weights(chain_pb2.SetWeights(netuid=c.netuid, uids=c.uids, weights=c.weights,
                                            version_key=c.version_key), net)
    if not 1 <= len(c.salt) <= MAX_SALT_U16S or max(c.salt) > U16_MAX:
        raise InvalidRequest(f"salt has {len(c.salt)} values: need 1..{MAX_SALT_U16S} u16s, the ones committed")


def _check_root_register(c: chain_pb2.RootRegister, net: NetworkParams) -> None:
    keys.check_address(c.hotkey, what="hotkey")


def _check_set_root_weights(c: chain_pb2.SetRootWeights, net: NetworkParams) -> None:
    check_weight_row(list(c.netuids), list(c.weights), what="netuids", limit=MAX_NETUID)
    for netuid in c.netuids:
        _check_netuid(netuid)
    check_amount(c.version_key, what="version_key", allow_zero=True)


_CALL_CHECKS = {
    "register_network": _check_register_network,
    "set_hyperparameter": _check_set_hyperparameter,
    "burned_register": _check_burned_register,
    "serve_axon": _check_serve_axon,
    "add_stake": _check_stake,
    "remove_stake": _check_stake,
    "set_delegate_take": _check_set_delegate_take,
    "set_weights": _check_set_weights,
    "commit_weights": _check_commit_weights,
    "reveal_weights": _check_reveal_weights,
    "root_register": _check_root_register,
    "set_root_weights": _check_set_root_weights,
}


def decode_queued(raw: bytes) -> CheckedExtrinsic:
    """Decode an extrinsic from the pool or a stored block: it passed check_extrinsic when it was
    submitted, and Redis is the chain's own state, so the signature is not verified again."""
    xt = chain_pb2.Extrinsic.FromString(raw)
    payload = chain_pb2.ExtrinsicPayload.FromString(xt.payload)
    call_name = payload.call.WhichOneof("call") or ""
    return CheckedExtrinsic(
        raw=raw,
        hash=extrinsic_hash(xt.payload, xt.signature),
        signer=payload.signer,
        nonce=payload.nonce,
        call_name=call_name,
        call=payload.call,
        upfront=0,
    )
