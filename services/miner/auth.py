"""Who may call a miner: signed request envelopes, signed responses, and the pluggable check.

The miner asks an `Authenticator` about every request before any model work. Two are here:
`AllowAll` (development, tests) and `SignatureAuthenticator`, which checks in order of cost:

  1. the envelope is there and addressed to this miner           -> UNAUTHENTICATED
  2. stake_of(caller) is not None (a permitted validator)         -> PERMISSION_DENIED
  3. the timestamp is fresh (within max_age_ms, max_future_ms)   -> UNAUTHENTICATED
  4. body_hash is the hash of this request's body                 -> UNAUTHENTICATED
  5. the sr25519 signature verifies                               -> UNAUTHENTICATED
  6. the nonce was not seen from this caller in the time window   -> UNAUTHENTICATED

Step 2 comes before everything that costs something (hashing the body, the signature) so that
unknown callers are refused with a dict lookup (it reveals only what the metagraph publishes
anyway); step 6 after the signature, so that forged requests cannot fill the nonce memory.
`stake_of` is where the chain's metagraph plugs in (services.miner.metagraph.MetagraphCache).

The byte layouts signed here are documented in protos/agora/miner/v1/miner.proto.
"""

from __future__ import annotations

import hashlib
import heapq
import inspect
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bittensor_wallet import Keypair

from services.common import keys
from services.common.errors import Overloaded, PermissionDenied, Unauthenticated

SERVICE = "agora.miner.v1.Miner"
REQUEST_DOMAIN = b"agora.miner.v1.request"
RESPONSE_DOMAIN = b"agora.miner.v1.response"
HASH_BYTES = 32

StakeOf = Callable[[str], "int | Awaitable[int | None] | None"]


# ---- errors (each names its reason for agora_auth_failures_total) ----

class MissingAuth(Unauthenticated):
    reason = "missing"


class WrongMiner(Unauthenticated):
    reason = "wrong_miner"


class StaleTimestamp(Unauthenticated):
    reason = "stale_timestamp"


class BodyHashMismatch(Unauthenticated):
    reason = "body_hash"


class BadRequestSignature(keys.BadSignature):
    reason = "bad_signature"


class ReplayedNonce(Unauthenticated):
    reason = "replayed_nonce"


class NotPermitted(PermissionDenied):
    reason = "not_permitted"


class NonceMemoryFull(Overloaded):
    reason = "nonce_memory_full"


# ---- the bytes that are hashed and signed ----

def method_path(name: str) -> str:
    """The method as signed: its full gRPC path, e.g. "/agora.miner.v1.Miner/NextWord"."""
    return f"/{SERVICE}/{name}"


def body_hash(message: Any, envelope_field: str = "auth") -> bytes:
    """SHA-256 of `message` serialised deterministically without its envelope field."""
    if not message.HasField(envelope_field):   # a response before it is signed: no copy needed
        return hashlib.sha256(message.SerializeToString(deterministic=True)).digest()
    body = type(message)()
    body.CopyFrom(message)
    body.ClearField(envelope_field)
    return hashlib.sha256(body.SerializeToString(deterministic=True)).digest()


def request_payload(method: str, auth: Any) -> bytes:
    return b"\x00".join((
        REQUEST_DOMAIN, method.encode(), auth.caller_hotkey.encode(), auth.miner_hotkey.encode(),
        struct.pack(">QQ", auth.nonce, auth.timestamp_ms) + bytes(auth.body_hash),
    ))


def request_digest(method: str, auth: Any) -> bytes:
    """What a response signature binds to: the hash of the request's signed bytes."""
    return hashlib.sha256(request_payload(method, auth)).digest()


def response_payload(method: str, miner_hotkey: str, digest: bytes, response_hash: bytes) -> bytes:
    return b"\x00".join((RESPONSE_DOMAIN, method.encode(), miner_hotkey.encode(), digest + response_hash))


def new_nonce() -> int:
    return secrets.randbits(63)


def sign_request(
    keypair: Keypair, method: str, request: Any, miner_hotkey: str, *,
    nonce: int | None = None, timestamp_ms: int | None = None,
) -> bytes:
    """Fill `request.auth` in place (caller side); returns the request digest for checking the response."""
    auth = request.auth
    auth.caller_hotkey = keypair.ss58_address
    auth.miner_hotkey = miner_hotkey
    auth.nonce = new_nonce() if nonce is None else nonce
    auth.timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    auth.body_hash = body_hash(request)
    payload = request_payload(method, auth)
    auth.signature = keypair.sign(payload)
    return hashlib.sha256(payload).digest()


def sign_response(keypair: Keypair, method: str, response: Any, digest: bytes) -> None:
    """Fill `response.signature` in place (miner side)."""
    h = body_hash(response, "signature")
    hotkey = keypair.ss58_address
    sig = response.signature
    sig.miner_hotkey = hotkey
    sig.body_hash = h
    sig.signature = keypair.sign(response_payload(method, hotkey, digest, h))


def verify_response(method: str, response: Any, digest: bytes, miner_hotkey: str) -> bool:
    """True when `response` is signed by `miner_hotkey`, for the request with `digest`, unaltered."""
    sig = response.signature
    if sig.miner_hotkey != miner_hotkey or sig.body_hash != body_hash(response, "signature"):
        return False
    return keys.verify(miner_hotkey, response_payload(method, miner_hotkey, digest, sig.body_hash), sig.signature)


# ---- the pluggable check ----

@dataclass(frozen=True, slots=True)
class CallerInfo:
    hotkey: str     # SS58 of the caller ("" if it did not say)
    stake: int      # rao; orders the miner's queue (more stake first)


BodyHash = bytes | Callable[[], bytes]


def _digest(body_hash: BodyHash) -> bytes:
    return body_hash() if callable(body_hash) else body_hash


class Authenticator(Protocol):
    async def check(self, method: str, auth: Any, body_hash: BodyHash) -> CallerInfo:
        """Return who is calling, or raise Unauthenticated / PermissionDenied. `body_hash` is the
        request body's hash, or a function computing it (called only once the caller is known)."""
        ...


async def _stake(stake_of: StakeOf | None, hotkey: str) -> int | None:
    if stake_of is None:
        return 0
    stake = stake_of(hotkey)
    if inspect.isawaitable(stake):
        stake = await stake
    return stake


class AllowAll:
    """Lets every request through, signed or not (development and tests). With `stake_of`, a
    caller that names its hotkey still gets its stake as queue priority."""

    def __init__(self, stake_of: StakeOf | None = None) -> None:
        self.stake_of = stake_of

    async def check(self, method: str, auth: Any, body_hash: BodyHash) -> CallerInfo:
        hotkey = auth.caller_hotkey if auth is not None else ""
        stake = await _stake(self.stake_of, hotkey) if hotkey and self.stake_of else 0
        return CallerInfo(hotkey, stake or 0)


class NonceMemory:
    """(caller, nonce) pairs seen, each kept until its timestamp leaves the freshness window."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._seen: set[tuple[str, int]] = set()
        self._expiry: list[tuple[int, str, int]] = []   # heap of (forget_at_ms, caller, nonce)

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, caller: str, nonce: int, forget_at_ms: int, now_ms: int) -> bool:
        """Record the pair; False if it was already there (a replay)."""
        while self._expiry and self._expiry[0][0] <= now_ms:
            _, c, n = heapq.heappop(self._expiry)
            self._seen.discard((c, n))
        key = (caller, nonce)
        if key in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            raise NonceMemoryFull(f"{len(self._seen)} nonces in the time window; try again shortly")
        self._seen.add(key)
        heapq.heappush(self._expiry, (forget_at_ms, caller, nonce))
        return True


class SignatureAuthenticator:
    """sr25519 signatures, nonces and timestamps; permission and stake from `stake_of(hotkey)`.

    `stake_of` returns the caller's stake in rao if it may call this miner (a validator of the
    subnet), None otherwise. Without it, every correctly signed caller is permitted with stake 0.
    """

    def __init__(
        self,
        miner_hotkey: str,
        stake_of: StakeOf | None = None,
        *,
        max_age_ms: int = 30_000,
        max_future_ms: int = 5_000,
        clock: Callable[[], float] = time.time,
        nonces: NonceMemory | None = None,
    ) -> None:
        self.miner_hotkey = miner_hotkey
        self.stake_of = stake_of
        self.max_age_ms = max_age_ms
        self.max_future_ms = max_future_ms
        self.clock = clock
        self.nonces = nonces or NonceMemory()

    async def check(self, method: str, auth: Any, body_hash: BodyHash) -> CallerInfo:
        if auth is None or not auth.caller_hotkey or not auth.signature:
            raise MissingAuth(f"{method}: the request carries no signed auth envelope")
        if auth.miner_hotkey != self.miner_hotkey:
            raise WrongMiner(f"request is addressed to miner {auth.miner_hotkey!r}, this is {self.miner_hotkey}")
        stake = await _stake(self.stake_of, auth.caller_hotkey)
        if stake is None:
            raise NotPermitted(f"{auth.caller_hotkey} is not a permitted validator of this subnet")
        now_ms = int(self.clock() * 1000)
        age = now_ms - auth.timestamp_ms
        if age > self.max_age_ms or -age > self.max_future_ms:
            raise StaleTimestamp(
                f"timestamp_ms {auth.timestamp_ms} is {age / 1000:+.1f}s from the miner's clock; "
                f"allowed: {self.max_age_ms / 1000:g}s old to {self.max_future_ms / 1000:g}s ahead"
            )
        if auth.body_hash != _digest(body_hash):
            raise BodyHashMismatch("body_hash is not the SHA-256 of this request's body: the signature covers another")
        if len(auth.signature) != keys.SIGNATURE_BYTES or not keys.verify(
            auth.caller_hotkey, request_payload(method, auth), auth.signature
        ):
            raise BadRequestSignature(f"signature does not match caller {auth.caller_hotkey}")
        forget_at = auth.timestamp_ms + self.max_age_ms + 1
        if not self.nonces.add(auth.caller_hotkey, auth.nonce, forget_at, now_ms):
            raise ReplayedNonce(f"nonce {auth.nonce} from {auth.caller_hotkey} was already used")
        return CallerInfo(auth.caller_hotkey, stake)
