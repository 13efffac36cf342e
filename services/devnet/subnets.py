"""The subnets of `make run` on the chain: created once, then found again; hyperparameters, the
registrations of every miner and validator hotkey, the validators' stake, root membership and root
weights topped up to the plan. Also the metagraph tables the live view and the summary print.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.client import (
    ChainClient,
    add_stake_call,
    burned_register_call,
    register_network_call,
    root_register_call,
    set_hyperparameter_call,
    set_root_weights_call,
)
from services.cli.signing import dev_hotkey, send
from services.common import keys
from services.common.units import RAO_PER_TAO, U16_MAX, format_tao
from services.devnet.plan import OWNER, TEMPO, VALIDATORS, SubnetPlan, ValidatorPlan

HYPERPARAMETERS = {
    "tempo": TEMPO,
    "weights_rate_limit": TEMPO // 2,   # validators set weights once per tempo; registering starts the clock
    "target_regs_per_interval": 4,      # six registrations at once stay under the cap (3 x target)
}
ROOT_WEIGHTS = (0.4, 0.3, 0.3)          # Bob's root weights over the plan's subnets, in order

Say = Callable[[str], None]


@dataclass
class LiveSubnet:
    plan: SubnetPlan
    netuid: int
    labels: dict[str, str] = field(default_factory=dict)   # hotkey address -> what the table shows
    epochs: int = 0


def miner_hotkey(coldkey: str, hotkey: str) -> Keypair:
    return dev_hotkey(coldkey, hotkey)


def validator_hotkey(v: ValidatorPlan) -> Keypair:
    return dev_hotkey(v.coldkey, v.hotkey)


async def _send(client: ChainClient, keypair: Keypair, calls: list, what: str):
    try:
        return await send(client, keypair, calls, what=what)
    except Exception as exc:  # CommandFailed or a gRPC refusal: the network cannot go on without it
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        raise RuntimeError(f"{what}: {detail}") from None


async def setup(client: ChainClient, plans: tuple[SubnetPlan, ...], say: Say) -> list[LiveSubnet]:
    owner = keys.dev_keypair(OWNER)
    subnets = await client.subnets()
    root = next(s for s in subnets if s.netuid == 0)
    min_tempo = next(h.min for h in root.hyperparameters if h.name == "tempo")
    if min_tempo > TEMPO:
        raise RuntimeError(f"this chain's minimum tempo is {min_tempo} (its genesis predates dev economics), "
                           f"so the subnets cannot run at tempo {TEMPO}: `make clean` and run again")
    live = []
    for plan in plans:
        found = [s for s in subnets if s.name == plan.name and s.owner_coldkey == owner.ss58_address]
        if found:
            netuid = found[0].netuid
            say(f"  subnet {netuid}   {plan.name!r} ({plan.task}): found, reusing it")
        else:
            hotkey = dev_hotkey(OWNER, "owner").ss58_address
            (done,) = await _send(client, owner, [register_network_call(plan.task, plan.name, hotkey)],
                                  f"create subnet {plan.name!r}")
            netuid = int(done.event("NetworkRegistered")["netuid"])
            say(f"  subnet {netuid}   {plan.name!r} ({plan.task}) created by //{OWNER} in block {done.block}")
        await _hyperparameters(client, owner, netuid, say)
        await _register(client, netuid, plan, say)
        sub = LiveSubnet(plan, netuid)
        sub.labels = {validator_hotkey(v).ss58_address: f"{v.coldkey}/validator" for v in VALIDATORS}
        sub.labels |= {miner_hotkey(m.coldkey, m.hotkey).ss58_address: m.label for m in plan.miners}
        sub.labels[dev_hotkey(OWNER, "owner").ss58_address] = f"{OWNER}/owner"
        live.append(sub)
    for v in VALIDATORS:
        await _top_up(client, v, say)
    await _root(client, live, say)
    return live


async def _hyperparameters(client: ChainClient, owner: Keypair, netuid: int, say: Say) -> None:
    info = await client.subnet(netuid)
    current = {h.name: h.value for h in info.hyperparameters}
    changes = [(n, v) for n, v in HYPERPARAMETERS.items() if current.get(n) != v]
    if changes:
        await _send(client, owner, [set_hyperparameter_call(netuid, n, v) for n, v in changes],
                    f"set hyperparameters of subnet {netuid}")
        say("             hyperparameters: " + ", ".join(f"{n}={v}" for n, v in changes))


async def _register(client: ChainClient, netuid: int, plan: SubnetPlan, say: Say) -> None:
    """Register what is missing, one batch per coldkey, validators first so uids follow the plan."""
    registered = {nr.hotkey for nr in (await client.metagraph(netuid)).neurons}
    wanted = [(v.coldkey, validator_hotkey(v)) for v in VALIDATORS]
    wanted += [(m.coldkey, miner_hotkey(m.coldkey, m.hotkey)) for m in plan.miners]
    missing: dict[str, list[str]] = {}
    for coldkey, hotkey in wanted:
        if hotkey.ss58_address not in registered:
            missing.setdefault(coldkey, []).append(hotkey.ss58_address)
    for coldkey, hotkeys in missing.items():
        await _send(client, keys.dev_keypair(coldkey), [burned_register_call(netuid, h) for h in hotkeys],
                    f"register {coldkey}'s hotkeys on subnet {netuid}")
    if missing:
        say(f"             registered {sum(map(len, missing.values()))} hotkeys of "
            f"{', '.join(missing)} on subnet {netuid}")


async def _top_up(client: ChainClient, v: ValidatorPlan, say: Say) -> None:
    coldkey, hotkey = keys.dev_keypair(v.coldkey), validator_hotkey(v).ss58_address
    have = next((s.amount for s in (await client.stake(coldkey.ss58_address)).stakes if s.hotkey == hotkey), 0)
    want = v.stake_tao * RAO_PER_TAO
    if have < want:
        await _send(client, coldkey, [add_stake_call(hotkey, want - have)], f"stake on {v.coldkey}/validator")
        say(f"  staked     {format_tao(want - have)} TAO on {v.coldkey}/validator")


async def _root(client: ChainClient, live: list[LiveSubnet], say: Say) -> None:
    """The most staked validator joins the root subnet (its weights follow once allowed)."""
    top = root_validator()
    hotkey = validator_hotkey(top)
    if hotkey.ss58_address not in {nr.hotkey for nr in (await client.metagraph(0)).neurons}:
        await _send(client, keys.dev_keypair(top.coldkey), [root_register_call(hotkey.ss58_address)],
                    f"root registration of {top.coldkey}/validator")
        say(f"  root       {top.coldkey}/validator joined the root subnet")


def root_validator() -> ValidatorPlan:
    return max(VALIDATORS, key=lambda v: v.stake_tao)


async def set_root_weights(client: ChainClient, live: list[LiveSubnet], block_time_s: float, say: Say) -> None:
    """Root weights over the subnets, once the rate limit that registering started allows them, so
    root's consensus (not an equal split) divides block emission among the subnets."""
    hotkey = validator_hotkey(root_validator())
    netuids = [s.netuid for s in live]
    wanted = [round(w * U16_MAX) for w in ROOT_WEIGHTS[:len(netuids)]]
    while True:
        m, root = await client.metagraph(0), await client.subnet(0)
        me = next((nr for nr in m.neurons if nr.hotkey == hotkey.ss58_address), None)
        if me is None:
            return
        limit = next(h.value for h in root.hyperparameters if h.name == "weights_rate_limit")
        if me.last_update + limit <= m.block:
            break
        await asyncio.sleep((me.last_update + limit - m.block + 1) * block_time_s)
    await _send(client, hotkey, [set_root_weights_call(netuids, wanted)], "root weights")
    say(f"  root       weights of {root_validator().coldkey}/validator over subnets: "
        + ", ".join(f"{n}: {w:.0%}" for n, w in zip(netuids, ROOT_WEIGHTS, strict=False)))


# ---- what the live view and the summary print ----

def epoch_netuids(block: chain_pb2.Block) -> list[int]:
    return [int(e.attributes["netuid"]) for e in block.events if e.name == "EpochRun"]


def _tao4(rao: int) -> str:
    whole, frac = divmod(rao, RAO_PER_TAO)
    return f"{whole:,}.{frac // 100_000:04d}"


async def show_metagraph(client: ChainClient, sub: LiveSubnet, say: Say) -> None:
    m = await client.metagraph(sub.netuid)
    say(f"  subnet {sub.netuid} {sub.plan.name!r} ({sub.plan.task}) after the epoch of block {m.last_epoch_block}:")
    say(f"    {'UID':>3}  {'NEURON':<22} {'STAKE':>10} {'INCENTIVE':>9} {'DIVIDENDS':>9} "
        f"{'EMISSION':>9} {'TRUST':>6} {'VTRUST':>6} PERMIT")
    for nr in m.neurons:
        say(f"    {nr.uid:>3}  {sub.labels.get(nr.hotkey, nr.hotkey[:10]):<22} {nr.stake // RAO_PER_TAO:>10,} "
            f"{nr.incentive / U16_MAX:>9.4f} {nr.dividends / U16_MAX:>9.4f} {_tao4(nr.emission):>9} "
            f"{nr.trust / U16_MAX:>6.3f} {nr.validator_trust / U16_MAX:>6.3f} {'*' if nr.validator_permit else ''}")


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (average ranks for ties); 0 when either side is constant."""
    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else 0.0


async def final_incentives(client: ChainClient, sub: LiveSubnet) -> dict:
    """The ladder's incentives on the chain, best rung first, and how well they follow the ladder."""
    m = await client.metagraph(sub.netuid)
    by_hotkey = {nr.hotkey: nr for nr in m.neurons}
    rows = []
    for miner in sub.plan.miners:
        nr = by_hotkey.get(miner_hotkey(miner.coldkey, miner.hotkey).ss58_address)
        if nr is not None:
            rows.append({"miner": miner.label, "hotkey": miner.hotkey, "uid": nr.uid,
                         "incentive": nr.incentive / U16_MAX, "emission_rao": nr.emission})
    incentives = [r["incentive"] for r in rows]
    total = sum(incentives)
    last = rows[-1]["incentive"] / total if rows and total else 0.0
    return {"netuid": sub.netuid, "name": sub.plan.name, "task": sub.plan.task, "epochs_seen": sub.epochs,
            "miners": rows, "spearman_vs_ladder": round(spearman(incentives, list(range(len(rows), 0, -1))), 3),
            "best_is_first": bool(rows) and max(incentives) == incentives[0] and incentives[0] > 0,
            "noise_share": round(last, 4)}


def show_final(result: dict, say: Say) -> None:
    say(f"  subnet {result['netuid']} {result['name']!r} ({result['task']}), {result['epochs_seen']} epochs seen: "
        f"incentive order vs the ladder Spearman {result['spearman_vs_ladder']:+.2f}, "
        f"noise miner's share {result['noise_share']:.2%}")
    for r in result["miners"]:
        bar = "#" * round(r["incentive"] * 40)
        say(f"    {r['miner']:<22} uid {r['uid']:>2}  incentive {r['incentive']:.4f} {bar}")
