"""Checks that an extrinsic must pass before it is queued: decoding, signature, chain id, call.

Only what does not depend on ledger state lives here; balance and nonce are checked again
atomically by the Lua script that applies the extrinsic (ledger.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.chain.v1 import chain_pb2
from google.protobuf.message import DecodeError

from services.chain.codec import HASH_BYTES, extrinsic_hash
from services.common import keys
from services.common.errors import InvalidRequest, WrongChain
from services.common.units import check_amount

MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CheckedExtrinsic:
    raw: bytes                       # the Extrinsic message as received, stored in the pool and the block
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
        return chain_pb2.ExtrinsicPayload.FromString(payload)
    except DecodeError:
        raise InvalidRequest("extrinsic payload is not a valid ExtrinsicPayload message") from None


def check_extrinsic(xt: chain_pb2.Extrinsic, chain_id: bytes, fee: int) -> CheckedExtrinsic:
    """Decode and check a signed extrinsic; raise the AgoraError that says what is wrong."""
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
    upfront = fee + _check_call(signer, call_name, payload.call)
    return CheckedExtrinsic(
        raw=xt.SerializeToString(),
        hash=extrinsic_hash(xt.payload, xt.signature),
        signer=signer,
        nonce=payload.nonce,
        call_name=call_name,
        call=payload.call,
        upfront=upfront,
    )


def _check_call(signer: str, call_name: str, call: chain_pb2.Call) -> int:
    """Validate the call's own fields; return the rao it moves out of the signer's free balance."""
    if call_name == "transfer":
        t = call.transfer
        dest = keys.check_address(t.dest, what="destination")
        if dest == signer:
            raise InvalidRequest(f"transfer to self ({signer}) would only burn the fee")
        return check_amount(t.amount, what="transfer amount")
    raise InvalidRequest(f"call {call_name!r} is not supported by this chain")


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
