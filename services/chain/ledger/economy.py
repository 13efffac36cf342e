"""The block-level steps' writes (coinbase, pay_epoch) and the issuance accounting with its check.

Both steps are journaled in the pending block under their own field ('coinbase',
'epoch:<netuid>'), next to the extrinsics' results, so a producer that resumes a crashed block
skips the steps already applied: nothing is minted or paid twice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.chain.coinbase import CoinbasePlan
from services.chain.epoch import EpochPlan
from services.chain.ledger.core import ApplyResult
from services.chain.ledger.keys import StateKeys


def epoch_step(netuid: int) -> str:
    """The journal field of a subnet's epoch in the pending block."""
    return f"epoch:{netuid}"


def _result_json(events: Any) -> str:
    return json.dumps({"applied": True, "ok": True, "error": "", "events": [list(e) for e in events]})


@dataclass(frozen=True, slots=True)
class Economy:
    """The issuance counters, rao."""

    issuance: int
    genesis_issuance: int
    minted: int
    burned: int
    total_stake: int
    locked: int
    pending_emission: int


class EconomyWrites:
    redis: aioredis.Redis
    keys: StateKeys
    _scripts: dict

    _call_as_leader: Callable[[str, list[str], list[Any]], Awaitable[Any]]  # from LedgerCore

    async def apply_coinbase(self, token: str, plan: CoinbasePlan) -> ApplyResult:
        k = self.keys
        args: list[Any] = [token, plan.issuance_rao, plan.reward_rao, plan.block, _result_json(plan.events)]
        for s in plan.subnets:
            args += [s.amount_rao, "" if s.new_burn_rao is None else s.new_burn_rao]
        reply = await self._call_as_leader(
            "coinbase",
            [k.lease, k.pending_results, k.issuance, k.minted, k.pending_emission,
             *(k.subnet(s.netuid).info for s in plan.subnets)],
            args,
        )
        return ApplyResult.from_json(reply)

    async def pay_epoch(self, token: str, plan: EpochPlan) -> ApplyResult:
        k, sn = self.keys, self.keys.subnet(plan.netuid)
        keys = [k.lease, k.pending_results, k.pending_emission, k.total_stake, k.stake_total, sn.info, sn.out,
                sn.permit, sn.pruning, sn.bonds]
        credits = "".join(f"{hotkey} {coldkey} {rao}\n" for hotkey, coldkey, rao in plan.credits)
        args: list[Any] = [token, epoch_step(plan.netuid), _result_json(plan.events), plan.block, plan.pending_rao,
                           plan.paid_rao, plan.permit, plan.pruning, credits, k.nominators(""), k.stakes_of(""),
                           len(plan.out)]
        for name, packed in plan.out.items():
            args += [name, packed]
        args.append(len(plan.bond_rows))
        for uid, row in sorted(plan.bond_rows.items()):
            args += [uid, row]
        return ApplyResult.from_json(await self._call_as_leader("pay_epoch", keys, args))

    # ---- accounting ----

    async def economy(self) -> Economy:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(k.issuance)
            pipe.hget(k.genesis, "issuance")
            for key in (k.minted, k.burned, k.total_stake, k.locked, k.pending_emission):
                pipe.get(key)
            raw = await pipe.execute()
        issuance, genesis, minted, burned, stake, locked, pending = (int(x or 0) for x in raw)
        return Economy(issuance=issuance, genesis_issuance=genesis, minted=minted, burned=burned,
                       total_stake=stake, locked=locked, pending_emission=pending)

    async def check_invariants(self) -> list[str]:
        """Read the whole state and list every accounting invariant it breaks (empty: all hold).
        For tests and audits: it reads every account and stake, so it is O(state)."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.free)
            pipe.hgetall(k.stake_total)
            pipe.hkeys(k.subnets)
            raw_free, raw_totals, raw_netuids = await pipe.execute()
        e = await self.economy()
        free = {a.decode(): int(v) for a, v in raw_free.items()}
        totals = {h.decode(): int(v) for h, v in raw_totals.items()}
        netuids = sorted(int(u) for u in raw_netuids)
        problems: list[str] = []

        def expect(what: str, got: int, want: int) -> None:
            if got != want:
                problems.append(f"{what}: {got} != {want} (off by {got - want})")

        expect("issuance == free + stake + locked + pending", e.issuance,
               sum(free.values()) + e.total_stake + e.locked + e.pending_emission)
        expect("issuance == genesis + minted - burned", e.issuance, e.genesis_issuance + e.minted - e.burned)
        expect("total_stake == sum of hotkey stakes", e.total_stake, sum(totals.values()))
        problems += [f"negative free balance of {a}: {v}" for a, v in free.items() if v < 0]
        async with self.redis.pipeline(transaction=False) as pipe:
            for hotkey in totals:
                pipe.hgetall(k.nominators(hotkey))
            for netuid in netuids:
                pipe.hmget(k.subnet(netuid).info, "pending", "locked")
            raw = await pipe.execute()
        nominations = raw[:len(totals)]
        coldkeys: set[str] = set()
        for hotkey, noms in zip(totals, nominations, strict=True):
            stakes = {c.decode(): int(v) for c, v in noms.items()}
            coldkeys |= set(stakes)
            expect(f"stake on {hotkey} == sum of its nominators", totals[hotkey], sum(stakes.values()))
            problems += [f"negative stake of {c} on {hotkey}" for c, v in stakes.items() if v < 0]
        subnet_rows = raw[len(totals):]
        expect("pending_emission == sum of subnets' pending", e.pending_emission,
               sum(int(p or 0) for p, _ in subnet_rows))
        expect("locked == sum of subnets' locks", e.locked, sum(int(lk or 0) for _, lk in subnet_rows))
        async with self.redis.pipeline(transaction=False) as pipe:
            for coldkey in sorted(coldkeys):
                pipe.hgetall(k.stakes_of(coldkey))
            mirrors = await pipe.execute()
        mirrored = sum(int(v) for m in mirrors for v in m.values())
        expect("coldkey stake mirrors == total_stake", mirrored, e.total_stake)
        return problems
