"""The ledger's core: scripts, genesis, the extrinsic pool, block production and account reads.

Every state change is one Lua script from scripts/ (prelude prepended), registered once; the
scripts check everything that depends on state before their first write, so a refusal or a crash
leaves either the whole change or none of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from services.chain import errors as chain_errors
from services.chain.extrinsics import HOTKEY_CALLS, CheckedExtrinsic
from services.chain.ledger.calls import CALL_SCRIPTS, SUBMIT_CHECKED, call_invocation
from services.chain.ledger.keys import StateKeys
from services.chain.pool import (
    EVENT_BYTES_PER_EXTRINSIC,
    FAILED_FREE_CALL_COOLDOWN_BLOCKS,
    BlockLimits,
    PoolLimits,
    free_call_lane,
)
from services.chain.subnets import ROOT_NETUID, NetworkParams
from services.common.errors import (
    AgoraError,
    DuplicateExtrinsic,
    FutureNonce,
    InsufficientFunds,
    Overloaded,
    StaleNonce,
    Unavailable,
)

BLOCK_STREAM_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class AccountState:
    address: str
    free: int
    nonce: int
    pool_nonce: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool             # False: dropped (stale nonce, fee unpayable), not part of the block
    ok: bool                  # the call took effect
    error: str
    events: list[list[str]]   # [name, key, value, key, value, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> ApplyResult:
        d = json.loads(text)
        events = d.get("events") or []  # cjson encodes an empty table as {}
        return cls(applied=bool(d["applied"]), ok=bool(d["ok"]), error=d.get("error", ""), events=list(events))


@dataclass(frozen=True, slots=True)
class PendingBlock:
    number: int
    started_ms: int
    extrinsics: list[bytes]


BLOCK_SCRIPTS = ("submit", "begin_block", "finalize_block", "genesis", "lease", "release_lease",
                 "coinbase", "pay_epoch", "read_subnet")


def _script_source(name: str) -> str:
    """The prelude, then for a call script its name, shared opening, parts and closing around its own file."""
    folder = resources.files("services.chain") / "scripts"
    parts = ["_prelude"]
    if name in CALL_SCRIPTS:
        parts += ["_call_begin", *CALL_SCRIPTS[name], name, "_call_end"]
    else:
        parts.append(name)
    header = f"local CALL = '{name}'\n" if name in CALL_SCRIPTS else ""
    return header + "\n".join((folder / f"{part}.lua").read_text() for part in parts)


# The first word of a script's error reply names the refusal; the rest is the value that caused it.
def _submit_error(err: ResponseError, xt: CheckedExtrinsic, upfront: int, pool: PoolLimits) -> AgoraError | None:
    """The refusal submit.lua named, or None for a reply it never gives (a script bug or a Redis
    failure: INTERNAL, not the caller's fault)."""
    word, _, value = str(err).partition(" ")
    if word == "POOL_FULL":
        return Overloaded(f"the extrinsic pool is full ({value} waiting); retry after the next block")
    if word == "POOL_FULL_BYTES":
        return Overloaded(f"the extrinsic pool is full ({value} of {pool.max_bytes} bytes waiting); "
                          "retry after the next block")
    if word == "SIGNER_LIMIT":
        return Overloaded(f"{xt.signer} has {value} extrinsics queued, the most one signer may have "
                          f"({pool.per_signer}); wait for them to be included")
    if word == "POOL_BUSY":
        mine, total, signers = value.split()
        return Overloaded(f"the extrinsic pool is more than half full and {xt.signer} holds {mine} of its {total} "
                          f"waiting extrinsics ({signers} signers): wait for a block before queueing more")
    if word == "LANE_BUSY":
        return Overloaded(f"{xt.call_name} by {xt.signer} is already queued (extrinsic {value}): a hotkey's "
                          f"fee-free call waits for its block before the next one of its kind")
    if word == "DUPLICATE":
        return DuplicateExtrinsic(f"extrinsic {xt.hash.hex()} was already submitted")
    if word == "STALE_NONCE":
        return StaleNonce(f"nonce {xt.nonce} of {xt.signer} is already used: the next nonce is {value}")
    if word == "NONCE_IN_POOL":
        return DuplicateExtrinsic(
            f"nonce {xt.nonce} of {xt.signer} is already queued: the next free nonce is {value}"
        )
    if word == "FUTURE_NONCE":
        return FutureNonce(f"nonce {xt.nonce} of {xt.signer} is ahead: the next nonce is {value}")
    if word == "INSUFFICIENT_FUNDS":
        free, reserved = value.split()
        return InsufficientFunds(
            f"{xt.signer} has {free} rao free, {reserved} rao of it held by its queued extrinsics, but this "
            f"extrinsic needs {upfront} rao (fee included)"
        )
    if word == "NOT_LEADER":
        return Unavailable(value)
    if word == "OOM":   # Redis at maxmemory with noeviction refuses every write
        return Overloaded("the chain's state store is full (Redis maxmemory): no extrinsic can be queued")
    return None


def _free_call_cooldown(xt: CheckedExtrinsic) -> str:
    """ARGV[9] of a call script: the cool-down of a fee-free hotkey call, '' for one that pays."""
    return str(FAILED_FREE_CALL_COOLDOWN_BLOCKS) if xt.call_name in HOTKEY_CALLS else ""


class NotLeader(Exception):
    """This process lost the block-production lease; it must stop writing blocks."""


class LedgerCore:
    def __init__(self, redis: aioredis.Redis, network: str, params: NetworkParams | None = None) -> None:
        self.redis = redis
        self.keys = StateKeys(network)
        self.network = network
        self.params = params or NetworkParams()
        """The network's economic parameters; main.py sets them from the genesis in force."""
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_script_source(name)) for name in (*BLOCK_SCRIPTS, *CALL_SCRIPTS)
        }

    # ---- genesis ----

    async def write_genesis(
        self, genesis_hash: bytes, block0: bytes, settings_json: str, balances: dict[str, int],
        root_hyperparameters: dict[str, int] | None = None,
    ) -> bytes:
        k = self.keys
        args: list[Any] = [genesis_hash.hex(), block0, settings_json, str(sum(balances.values())), len(balances)]
        for address, rao in sorted(balances.items()):
            args += [address, str(rao)]
        for name, value in (root_hyperparameters or {}).items():
            args += [name, value]
        root = k.subnet(ROOT_NETUID)
        keys = [k.genesis, k.free, k.issuance, k.burned, k.head, k.blocks, k.block_index, k.subnets, root.info, root.hp]
        in_force = await self._scripts["genesis"](keys=keys, args=args)
        return bytes.fromhex(in_force.decode())

    async def genesis(self) -> tuple[bytes, dict[str, Any]] | None:
        got = await self.redis.hmget(self.keys.genesis, "hash", "settings")
        if got[0] is None:
            return None
        return bytes.fromhex(got[0].decode()), json.loads(got[1])

    # ---- the pool ----

    async def submit(self, xt: CheckedExtrinsic, pool: PoolLimits, *, precheck: bool = True) -> int:
        """Queue xt for the next block under the pool's limits (services/chain/pool.py); return the
        signer's next nonce. With precheck (always, but in tests of apply-time failures and in
        replay), the call's script first runs its checks against the current state, so a call that
        would fail is refused now with its own error and code."""
        k = self.keys
        upfront = xt.upfront
        if precheck and xt.call_name in SUBMIT_CHECKED:
            await self._refuse_used(xt)
            upfront += await self.check_call(xt)
        try:
            nxt = await self._scripts["submit"](
                keys=[k.pool, k.pool_xt, k.pool_next, k.nonces, k.free, k.status, *k.pool_accounting()],
                args=[xt.signer, str(xt.nonce), xt.hash.hex(), xt.raw, str(upfront), str(pool.capacity),
                      str(pool.max_bytes), str(pool.per_signer), "" if pool.replaying else free_call_lane(xt),
                      "0" if pool.replaying else "1"],
            )
        except ResponseError as err:
            refusal = _submit_error(err, xt, upfront, pool)
            if refusal is None:
                raise
            raise refusal from None
        return int(nxt)

    async def pool_holding(self, signer: str) -> tuple[int, int]:
        """(extrinsics, rao) the pool holds for signer: queued or in the block being built."""
        k = self.keys
        count, reserved = await self.redis.hget(k.pool_count, signer), await self.redis.hget(k.pool_reserved, signer)
        return int(count or 0), int(reserved or 0)

    async def _refuse_used(self, xt: CheckedExtrinsic) -> None:
        """Refuse a replay or a used nonce as such before the call's own checks, which would otherwise
        answer for it (a replayed serve_axon is RateLimited: RESOURCE_EXHAUSTED, which invites a
        retry). Only a fast path: submit.lua checks both again, atomically with queueing."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.status, xt.hash.hex())
            pipe.hget(k.nonces, xt.signer)
            pipe.hget(k.pool_next, xt.signer)
            known, applied, queued = await pipe.execute()
        applied = int(applied or 0)
        if known == b"q":
            return   # the same extrinsic, queued: submit.lua acknowledges it again
        if known:
            raise DuplicateExtrinsic(f"extrinsic {xt.hash.hex()} was already submitted")
        if xt.nonce < applied:
            raise StaleNonce(f"nonce {xt.nonce} of {xt.signer} is already used: the next nonce is {applied}")
        if xt.nonce < int(queued or 0):
            raise DuplicateExtrinsic(f"nonce {xt.nonce} of {xt.signer} is already queued: the next free nonce is "
                                     f"{int(queued)}")

    async def check_call(self, xt: CheckedExtrinsic) -> int:
        """Run xt's call checks against current state, writing nothing; return the rao the call
        takes from the signer's free balance beyond the fee. Raises the call's error."""
        call_keys, call_args = call_invocation(self.keys, self.params, xt)
        args = ["check", "", "", xt.signer, str(xt.nonce), "0", "", xt.hash.hex(), _free_call_cooldown(xt),
                *call_args]
        try:
            needed = await self._scripts[xt.call_name](keys=[*self.keys.call_common(), *call_keys], args=args)
        except ResponseError as err:
            refusal = chain_errors.from_script(str(err))
            if refusal is None:
                raise
            raise refusal from None
        return int(needed)

    # ---- block production (lease holder only) ----

    async def hold_lease(self, token: str, lease_ms: int) -> bool:
        return bool(await self._scripts["lease"](keys=[self.keys.lease], args=[token, str(lease_ms)]))

    async def release_lease(self, token: str) -> None:
        await self._scripts["release_lease"](keys=[self.keys.lease], args=[token])

    async def begin_block(self, token: str, limits: BlockLimits, now_ms: int) -> PendingBlock:
        k = self.keys
        reply = await self._call_as_leader(
            "begin_block",
            [k.lease, k.pending, k.pending_xts, k.pool, k.pool_xt, k.head, k.pool_stats],
            [token, str(limits.max_extrinsics), str(limits.max_bytes), str(EVENT_BYTES_PER_EXTRINSIC), str(now_ms)],
        )
        return PendingBlock(number=int(reply[0]), started_ms=int(reply[1]), extrinsics=list(reply[2:]))

    async def apply_extrinsics(
        self, token: str, batch: list[tuple[int, CheckedExtrinsic, int]], block: int | None = None
    ) -> list[ApplyResult]:
        """Apply (index, extrinsic, fee) in order, in one round trip; each is its own atomic script.
        `block` is the pending block's number (read from Redis when not given)."""
        if block is None:
            block = int(await self.redis.hget(self.keys.pending, "number") or 0)
        async with self.redis.pipeline(transaction=False) as pipe:
            for index, xt, fee in batch:
                name, keys, args = self._apply_call(token, index, xt, fee, block)
                await self._scripts[name](keys=keys, args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)
        results = []
        for reply in replies:
            if isinstance(reply, ResponseError):
                if str(reply).startswith("NOT_LEADER"):
                    raise NotLeader(str(reply))
                raise reply
            results.append(ApplyResult.from_json(reply))
        return results

    def _apply_call(
        self, token: str, index: int, xt: CheckedExtrinsic, fee: int, block: int
    ) -> tuple[str, list[str], list[Any]]:
        """The script, KEYS and ARGV that apply one extrinsic's call."""
        k = self.keys
        call_keys, call_args = call_invocation(k, self.params, xt)
        args = ["apply", token, str(index), xt.signer, str(xt.nonce), str(fee), str(block), xt.hash.hex(),
                _free_call_cooldown(xt), *call_args]
        return xt.call_name, [*k.call_common(), *call_keys], args

    async def finalize_block(
        self, token: str, number: int, block_hash: bytes, block: bytes, events_json: str,
        statuses: list[tuple[bytes, str]],
    ) -> None:
        k = self.keys
        args: list[Any] = [token, str(number), block_hash.hex(), block, events_json, str(BLOCK_STREAM_MAXLEN)]
        for xt_hash, status in statuses:
            args += [xt_hash.hex(), status]
        await self._call_as_leader(
            "finalize_block",
            [k.lease, k.pending, k.pending_xts, k.pending_results, k.head, k.blocks, k.block_index,
             k.status, k.stream],
            args,
        )

    async def _call_as_leader(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[name](keys=keys, args=args)
        except ResponseError as err:
            if str(err).startswith("NOT_LEADER"):
                raise NotLeader(str(err)) from None
            raise

    async def lease_holder(self) -> str:
        holder = await self.redis.get(self.keys.lease)
        return holder.decode() if holder else ""

    # ---- reads ----

    async def account(self, address: str) -> AccountState:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(k.free, address)
            pipe.hget(k.nonces, address)
            pipe.hget(k.pool_next, address)
            free, nonce, pool_next = await pipe.execute()
        applied = int(nonce or 0)
        return AccountState(
            address=address, free=int(free or 0), nonce=applied, pool_nonce=max(applied, int(pool_next or 0))
        )

    async def head(self) -> tuple[int, bytes]:
        number, block_hash = await self.redis.hmget(self.keys.head, "number", "hash")
        if number is None:
            raise Unavailable("the chain has no genesis yet")
        return int(number), bytes.fromhex(block_hash.decode())

    async def totals(self) -> tuple[int, int, int]:
        """(total issuance, total burned, pool size) in one round trip (see also economy())."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(k.issuance)
            pipe.get(k.burned)
            pipe.zcard(k.pool)
            issuance, burned, pool = await pipe.execute()
        return int(issuance or 0), int(burned or 0), int(pool)

    async def block_bytes(self, number: int) -> bytes | None:
        return await self.redis.hget(self.keys.blocks, str(number))

    async def block_number_of(self, block_hash: bytes) -> int | None:
        n = await self.redis.hget(self.keys.block_index, block_hash.hex())
        return None if n is None else int(n)

    async def extrinsic_status(self, xt_hash: bytes) -> str | None:
        s = await self.redis.hget(self.keys.status, xt_hash.hex())
        return None if s is None else s.decode()

    async def pending_results(self) -> dict[int, ApplyResult]:
        """Journaled results of the pending block's extrinsics, by index."""
        raw = await self.redis.hgetall(self.keys.pending_results)
        return {int(i): ApplyResult.from_json(v) for i, v in raw.items() if i.isdigit()}

    async def block_steps_done(self) -> dict[str, ApplyResult]:
        """Journaled block-level steps of the pending block ('coinbase', 'epoch:<netuid>')."""
        raw = await self.redis.hgetall(self.keys.pending_results)
        return {i.decode(): ApplyResult.from_json(v) for i, v in raw.items() if not i.isdigit()}

    async def wait_for_block_after(self, number: int, timeout_ms: int) -> None:
        """Block until the stream has an entry past `number`, or the timeout passes."""
        await self.redis.xread({self.keys.stream: f"{number}-1"}, count=1, block=timeout_ms)

    async def state_dump(self) -> dict[str, Any]:
        """Every key of this network with its content: tests compare two dumps to show a refused
        request changed nothing at all. (Not DUMP: its field order follows Redis' rehashing.)"""
        readers = {b"string": self.redis.get, b"hash": self.redis.hgetall,
                   b"list": lambda key: self.redis.lrange(key, 0, -1), b"stream": self.redis.xrange,
                   b"zset": lambda key: self.redis.zrange(key, 0, -1, withscores=True)}
        dump: dict[str, Any] = {}
        async for key in self.redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
            dump[key.decode()] = await readers[await self.redis.type(key)](key)
        return dump

    async def all_balances(self) -> dict[str, int]:
        return {a.decode(): int(v) for a, v in (await self.redis.hgetall(self.keys.free)).items()}
