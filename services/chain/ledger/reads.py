"""Reads of subnets, stake and delegates. A subnet is read by one script (read_subnet.lua), so its
metagraph or epoch snapshot is consistent even while blocks are being written."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from services.chain.errors import UnknownSubnet
from services.chain.ledger.keys import StateKeys
from services.chain.state import SubnetSnapshot, SubnetState
from services.chain.subnets import DEFAULT_TAKE_U16


@dataclass(frozen=True, slots=True)
class StakeRow:
    hotkey: str
    amount_rao: int
    hotkey_owner: str
    take: int | None                  # None: not a delegate


@dataclass(frozen=True, slots=True)
class DelegateRow:
    hotkey: str
    owner: str
    take: int
    total_stake_rao: int
    nominators: int
    netuids: list[int]


class SubnetReads:
    redis: aioredis.Redis
    keys: StateKeys
    _scripts: dict

    async def netuids(self) -> list[int]:
        return sorted(int(u) for u in await self.redis.hkeys(self.keys.subnets))

    async def subnet_states(self, netuids: list[int] | None = None) -> list[SubnetState]:
        """Every subnet (or those asked), root included, in one round trip after the list."""
        if netuids is None:
            netuids = await self.netuids()
        async with self.redis.pipeline(transaction=False) as pipe:
            for netuid in netuids:
                sn = self.keys.subnet(netuid)
                pipe.hgetall(sn.info)
                pipe.hgetall(sn.hp)
            raw = await pipe.execute()
        return [SubnetState.from_hashes(info, hp) for info, hp in zip(raw[::2], raw[1::2], strict=True) if info]

    async def subnet(self, netuid: int) -> SubnetState:
        states = await self.subnet_states([netuid])
        if not states:
            raise UnknownSubnet(f"no subnet {netuid}")
        return states[0]

    async def subnet_snapshot(self, netuid: int, *, weights: bool = True, bonds: bool = True,
                              metagraph: bool = False) -> SubnetSnapshot:
        """One consistent read of a subnet: per-uid hotkeys, owners, stakes, takes and vectors,
        weights and bonds if asked, axons and last epoch's outputs with `metagraph`."""
        k, sn = self.keys, self.keys.subnet(netuid)
        reply = await self._scripts["read_subnet"](
            keys=[sn.info, sn.hp, sn.hotkeys, sn.reg_block, sn.last_update, sn.pruning, sn.permit, sn.weights,
                  sn.bonds, sn.axons, sn.out, k.stake_total, k.hotkey_owner, k.delegate_take, sn.commits],
            args=["1" if weights else "0", "1" if bonds else "0", "1" if metagraph else "0"],
        )
        if not reply[0]:
            raise UnknownSubnet(f"no subnet {netuid}")
        return SubnetSnapshot.from_reply(reply)

    async def stake_of(self, coldkey: str) -> list[StakeRow]:
        """The coldkey's stake on each hotkey, largest first."""
        stakes = {h.decode(): int(v) for h, v in (await self.redis.hgetall(self.keys.stakes_of(coldkey))).items()}
        hotkeys = sorted(stakes, key=lambda h: (-stakes[h], h))
        if not hotkeys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.hotkey_owner, hotkeys)
            pipe.hmget(self.keys.delegate_take, hotkeys)
            owners, takes = await pipe.execute()
        return [StakeRow(hotkey=h, amount_rao=stakes[h], hotkey_owner=(o or b"").decode(),
                         take=int(t) if t is not None else None)
                for h, o, t in zip(hotkeys, owners, takes, strict=True)]

    async def nominators_of(self, hotkeys: list[str]) -> dict[str, dict[str, int]]:
        """Stake by coldkey on each hotkey (its owner's included), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for hotkey in hotkeys:
                pipe.hgetall(self.keys.nominators(hotkey))
            raw = await pipe.execute()
        return {h: {c.decode(): int(v) for c, v in r.items()} for h, r in zip(hotkeys, raw, strict=True)}

    async def delegates(self) -> list[DelegateRow]:
        """Hotkeys that accept nominators, by total stake (largest first)."""
        takes = {h.decode(): int(t) for h, t in (await self.redis.hgetall(self.keys.delegate_take)).items()}
        hotkeys = sorted(takes)
        if not hotkeys:
            return []
        netuids = await self.netuids()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.hotkey_owner, hotkeys)
            pipe.hmget(self.keys.stake_total, hotkeys)
            for hotkey in hotkeys:
                pipe.hlen(self.keys.nominators(hotkey))
            for netuid in netuids:
                pipe.hmget(self.keys.subnet(netuid).uids, hotkeys)
            raw = await pipe.execute()
        owners, totals, counts, uid_rows = raw[0], raw[1], raw[2:2 + len(hotkeys)], raw[2 + len(hotkeys):]
        rows = [
            DelegateRow(hotkey=h, owner=(owners[i] or b"").decode(), take=takes.get(h, DEFAULT_TAKE_U16),
                        total_stake_rao=int(totals[i] or 0), nominators=int(counts[i]),
                        netuids=[u for u, uids in zip(netuids, uid_rows, strict=True) if uids[i] is not None])
            for i, h in enumerate(hotkeys)
        ]
        return sorted(rows, key=lambda r: (-r.total_stake_rao, r.hotkey))

    async def hotkey_owner(self, hotkey: str) -> str | None:
        owner = await self.redis.hget(self.keys.hotkey_owner, hotkey)
        return None if owner is None else owner.decode()
