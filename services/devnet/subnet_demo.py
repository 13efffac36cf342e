"""The subnet of `make run`: "demo" (next-token, tempo 10) with three validators and four miners on
dev keys, the validators weighting the miners by script every tempo, so each epoch shows emission
flowing by Yuma consensus. Created once; a second run finds it and tops up what is missing.

Keys follow the CLI's `--dev NAME --wallet.hotkey H` convention (coldkey //NAME, hotkey //NAME//H),
so `agora weights set --dev Bob --wallet.hotkey validator ...` drives the same validator by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bittensor_wallet import Keypair

from services.chain.client import (
    ChainClient,
    add_stake_call,
    burned_register_call,
    register_network_call,
    set_hyperparameter_call,
    set_weights_call,
)
from services.cli.signing import dev_hotkey, send
from services.cli.weights_cmds import u16_weights
from services.common import keys
from services.common.units import RAO_PER_TAO, format_tao

NAME = "demo"
TASK = "next-token"
TEMPO = 10
MIN_TEMPO = 1          # the chain is started with this, so a dev subnet may run epochs every few blocks
OWNER = "Alice"
HYPERPARAMETERS = {
    "tempo": TEMPO,
    "weights_rate_limit": TEMPO // 2,    # validators set weights once per tempo; registering starts the clock
    "target_regs_per_interval": 4,       # seven registrations at once stay under the cap (3 x target)
}


@dataclass(frozen=True, slots=True)
class Role:
    coldkey: str           # dev account name
    hotkey: str            # hotkey name under it
    stake_tao: int = 0     # validators: stake their owner keeps on them
    weights: tuple[float, ...] = ()  # validators: the scripted weights on MINERS, in order

    @property
    def label(self) -> str:
        return f"{self.coldkey}/{self.hotkey}"

    def hotkey_pair(self) -> Keypair:
        return dev_hotkey(self.coldkey, self.hotkey)


# Agreeing preferences (miner0 > miner1 > miner2 > miner3); Dave is slightly off and overrates
# miner3, so consensus clips that weight: his vtrust and dividends per stake drop below the others'.
VALIDATORS = (
    Role("Bob", "validator", 3000, (0.40, 0.30, 0.20, 0.10)),
    Role("Charlie", "validator", 2000, (0.45, 0.30, 0.15, 0.10)),
    Role("Dave", "validator", 1000, (0.25, 0.30, 0.15, 0.30)),
)
MINERS = (Role("Eve", "miner0"), Role("Eve", "miner1"), Role("Ferdie", "miner2"), Role("Ferdie", "miner3"))


@dataclass
class Demo:
    netuid: int
    block_time_s: float
    labels: dict[str, str] = field(default_factory=dict)   # hotkey address -> "Bob/validator"
    epochs: int = 0
    weights_set: int = 0
    weights_refused: int = 0


async def _send(client: ChainClient, keypair: Keypair, calls: list, what: str):
    try:
        return await send(client, keypair, calls, what=what)
    except Exception as exc:  # CommandFailed or a gRPC refusal: the demo cannot go on without it
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        raise RuntimeError(f"{what}: {detail}") from None


async def setup(client: ChainClient, say: Callable[[str], None]) -> Demo:
    """Find or create the subnet, set its hyperparameters, register and stake what is missing."""
    owner = keys.dev_keypair(OWNER)
    subnets = await client.subnets()
    root = next(s for s in subnets if s.netuid == 0)
    min_tempo = next(h.min for h in root.hyperparameters if h.name == "tempo")
    if min_tempo > TEMPO:
        raise RuntimeError(f"this chain's minimum tempo is {min_tempo} (its genesis predates dev economics), "
                           f"so subnet {NAME!r} cannot run at tempo {TEMPO}: `make clean` and run again")
    found = [s for s in subnets if s.name == NAME and s.owner_coldkey == owner.ss58_address]
    if found:
        netuid = found[0].netuid
        say(f"  subnet     {netuid} {NAME!r} ({TASK}), found: reusing it")
    else:
        hotkey = dev_hotkey(OWNER, "owner").ss58_address
        (done,) = await _send(client, owner, [register_network_call(TASK, NAME, hotkey)], f"create subnet {NAME!r}")
        netuid = int(done.event("NetworkRegistered")["netuid"])
        say(f"  subnet     {netuid} {NAME!r} ({TASK}) created by //{OWNER} in block {done.block}")
    info = await client.subnet(netuid)
    current = {h.name: h.value for h in info.hyperparameters}
    changes = [(n, v) for n, v in HYPERPARAMETERS.items() if current.get(n) != v]
    if changes:
        await _send(client, owner, [set_hyperparameter_call(netuid, n, v) for n, v in changes],
                    f"set hyperparameters of subnet {netuid}")
        say("  hyperparameters: " + ", ".join(f"{n}={v}" for n, v in changes))

    registered = {nr.hotkey for nr in (await client.metagraph(netuid)).neurons}
    missing: dict[str, list[Role]] = {}
    for role in (*VALIDATORS, *MINERS):
        if role.hotkey_pair().ss58_address not in registered:
            missing.setdefault(role.coldkey, []).append(role)
    for ck, roles in missing.items():  # one batch per coldkey, in order, so uids follow VALIDATORS, MINERS
        await _send(client, keys.dev_keypair(ck), [burned_register_call(netuid, r.hotkey_pair().ss58_address)
                                                   for r in roles], f"register {ck}'s hotkeys on subnet {netuid}")
    if missing:
        say(f"  registered {', '.join(r.label for roles in missing.values() for r in roles)}")
    await asyncio.gather(*(_top_up(client, v, say) for v in VALIDATORS))

    chain = await client.info()
    demo = Demo(netuid=netuid, block_time_s=chain.block_time_ms / 1000)
    demo.labels = {r.hotkey_pair().ss58_address: r.label for r in (*VALIDATORS, *MINERS)}
    demo.labels[dev_hotkey(OWNER, "owner").ss58_address] = f"{OWNER}/owner"
    return demo


async def _top_up(client: ChainClient, v: Role, say: Callable[[str], None]) -> None:
    coldkey, hotkey = keys.dev_keypair(v.coldkey), v.hotkey_pair().ss58_address
    have = next((s.amount for s in (await client.stake(coldkey.ss58_address)).stakes if s.hotkey == hotkey), 0)
    want = v.stake_tao * RAO_PER_TAO
    if have < want:
        await _send(client, coldkey, [add_stake_call(hotkey, want - have)], f"stake on {v.label}")
        say(f"  staked     {format_tao(want - have)} TAO on {v.label}")


# ---- running ----

async def set_weights_every_tempo(client: ChainClient, demo: Demo, say: Callable[[str], None]) -> None:
    """Each validator sets its scripted weights, then all wait until just after the next epoch."""
    while True:
        m, info = await client.metagraph(demo.netuid), await client.subnet(demo.netuid)
        uid_of = {nr.hotkey: nr.uid for nr in m.neurons}
        # registering starts the weights rate limit too: wait until every validator may set weights
        limit = next(h.value for h in info.hyperparameters if h.name == "weights_rate_limit")
        opens = max(m.neurons[uid_of[v.hotkey_pair().ss58_address]].last_update + limit for v in VALIDATORS)
        if opens > m.block:
            await asyncio.sleep((opens - m.block) * demo.block_time_s)
        miner_uids = [uid_of[m.hotkey_pair().ss58_address] for m in MINERS]
        results = await asyncio.gather(*(_weights(client, demo, v, miner_uids) for v in VALIDATORS),
                                       return_exceptions=True)
        for v, r in zip(VALIDATORS, results, strict=True):
            if isinstance(r, Exception):
                demo.weights_refused += 1
                say(f"  weights of {v.label} refused: {r}")
            else:
                demo.weights_set += 1
        info, head = await client.subnet(demo.netuid), (await client.info()).head_number
        await asyncio.sleep(max(1, info.next_epoch_block - head + 1) * demo.block_time_s)


async def _weights(client: ChainClient, demo: Demo, v: Role, miner_uids: list[int]) -> None:
    uids, weights = u16_weights(miner_uids, ",".join(map(str, v.weights)), "uids")
    await _send(client, v.hotkey_pair(), [set_weights_call(demo.netuid, uids, weights)],
                f"weights of {v.label}")


def block_note(demo: Demo, block) -> str:
    """What the demo subnet did in this block, for the block's line."""
    notes = []
    weights = sum(1 for e in block.events if e.name == "WeightsSet" and e.attributes.get("netuid") == str(demo.netuid))
    if weights:
        notes.append(f"{weights} weights")
    for e in block.events:
        if e.name == "EpochRun" and e.attributes.get("netuid") == str(demo.netuid):
            notes.append(f"EPOCH of subnet {demo.netuid}, emission {format_tao(int(e.attributes['emission']))} TAO")
    return " | " + ", ".join(notes) if notes else ""


async def on_block(client: ChainClient, demo: Demo, block, say: Callable[[str], None]) -> None:
    if any(e.name == "EpochRun" and e.attributes.get("netuid") == str(demo.netuid) for e in block.events):
        demo.epochs += 1
        await show_metagraph(client, demo, say)


async def show_metagraph(client: ChainClient, demo: Demo, say: Callable[[str], None]) -> None:
    m = await client.metagraph(demo.netuid)
    say(f"  metagraph of subnet {demo.netuid} after the epoch of block {m.last_epoch_block}:")
    say(f"    {'UID':>3}  {'NEURON':<17} {'STAKE (TAO)':>14} {'INCENTIVE':>9} {'DIVIDENDS':>9} "
        f"{'EMISSION':>12} {'TRUST':>6} {'VTRUST':>6} PERMIT")
    for nr in m.neurons:
        say(f"    {nr.uid:>3}  {demo.labels.get(nr.hotkey, nr.hotkey[:10]):<17} {_tao4(nr.stake):>14} "
            f"{nr.incentive / 65535:>9.4f} {nr.dividends / 65535:>9.4f} {_tao4(nr.emission):>12} "
            f"{nr.trust / 65535:>6.3f} {nr.validator_trust / 65535:>6.3f} {'*' if nr.validator_permit else ''}")


def _tao4(rao: int) -> str:
    whole, frac = divmod(rao, RAO_PER_TAO)
    return f"{whole:,}.{frac // 100_000:04d}"


async def summary(client: ChainClient, demo: Demo, say: Callable[[str], None]) -> None:
    m = await client.metagraph(demo.netuid)
    by_hotkey = {nr.hotkey: nr for nr in m.neurons}
    prefs = " > ".join(m.hotkey for m in MINERS)
    say(f"  subnet {demo.netuid} {NAME!r}: {demo.epochs} epochs seen, {demo.weights_set} weight sets "
        f"({demo.weights_refused} refused); validators prefer {prefs}")
    for miner in MINERS:
        nr = by_hotkey.get(miner.hotkey_pair().ss58_address)
        if nr is None:
            continue
        say(f"    {miner.label:<14} uid {nr.uid:>2}  incentive {nr.incentive / 65535:.4f}  "
            f"last emission {format_tao(nr.emission)} TAO  stake {format_tao(nr.stake)} TAO")
