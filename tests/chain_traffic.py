"""Random extrinsics of every kind the chain has, valid and invalid, and the audit of each block.

Shared by the ledger's stateful property test (a Random drawn by hypothesis) and the reliability
benchmark (a seeded Random): `propose` only asks its chooser for choices, so both drive the same
catalogue. `audit_block` recomputes, from a block's events alone, what every
balance, nonce and counter must have become, and compares it with the state: an extrinsic applied
by half, or twice, or a step that moved tokens without saying so, shows up as a difference.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.codec import blake2_256, weight_commit_hash
from services.chain.extrinsics import check_extrinsic
from services.chain.ledger import Economy, Ledger
from services.chain.ledger.digest import state_digest
from services.chain.local import LocalChain
from services.chain.pool import EVENT_BYTES_PER_EXTRINSIC
from services.chain.settings import ChainSettings, dev_balances
from services.chain.subnets import MAX_NETUID, ROOT_NETUID, NetworkParams, hyperparameter_bounds
from services.common.errors import AgoraError
from services.common.keys import dev_keypair, public_key
from services.common.units import MAX_AMOUNT_RAO

T = TypeVar("T")
TAO = 10**9
# small and fast: epochs every few blocks, root and take limits of a few blocks, three subnets at most
ECONOMICS = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO, max_subnets=3, root_max_validators=2,
                          root_weights_rate_limit=3, delegate_take_rate_limit=5)
COLDKEYS = [dev_keypair(name) for name in ("Alice", "Bob", "Charlie", "Dave", "Eve")]
POOR = [dev_keypair(f"reliability/poor/{i}") for i in range(2)]    # no genesis funds: fees they cannot pay
HOTKEYS = [dev_keypair(f"reliability/hotkey/{i}") for i in range(8)]
ACCOUNTS = [*COLDKEYS, *POOR, *HOTKEYS]
KINDS = ("transfer", "register_network", "set_hyperparameter", "burned_register", "serve_axon", "add_stake",
         "remove_stake", "set_delegate_take", "set_weights", "root_register", "set_root_weights", "commit_weights",
         "reveal_weights")
# commit-reveal: a few fixed rows, so a later reveal by the same hotkey often matches an earlier commit
CR_ROWS = (([0], [65_535], [1]), ([0, 1], [1, 2], [7, 7]), ([1, 2], [3, 0], [9]))
TAMPERS = ("signature", "impostor", "chain_id", "short_chain_id", "tip", "stale_nonce", "future_nonce",
           "garbage_payload", "no_call")
SUBNET_SETUP = {"tempo": 2, "max_allowed_uids": 4, "immunity_period": 3, "weights_rate_limit": 1,
                "serving_rate_limit": 2, "adjustment_interval": 5, "target_regs_per_interval": 2}
"""Hyperparameters of the subnet every run starts with: epochs every 3 blocks, a full subnet after
four registrations (so new ones prune), burn adjustments every few blocks."""


class Chooser(Protocol):
    """random.Random: seeded in the benchmark, drawn by hypothesis (st.randoms) in the property test."""

    def choice(self, seq: Sequence[T]) -> T: ...

    def randint(self, a: int, b: int) -> int: ...


@dataclass(frozen=True, slots=True)
class View:
    """What the generator knows of the state, to aim most calls at things that exist."""

    owners: dict[int, str]                   # non-root netuid -> owner coldkey
    members: dict[int, list[str]]            # netuid (root included) -> hotkeys by uid
    stakes: dict[str, dict[str, int]]        # coldkey -> hotkey -> rao
    hotkey_owner: dict[str, str]


async def read_view(ledger: Ledger) -> View:
    subnets = await ledger.subnet_states()
    members = {}
    for s in subnets:
        members[s.netuid] = (await ledger.subnet_snapshot(s.netuid, weights=False, bonds=False)).hotkeys
    stakes = {}
    for k in COLDKEYS + POOR:
        stakes[k.ss58_address] = {row.hotkey: row.amount_rao for row in await ledger.stake_of(k.ss58_address)}
    owners = {}
    for h in HOTKEYS:
        owner = await ledger.hotkey_owner(h.ss58_address)
        if owner is not None:
            owners[h.ss58_address] = owner
    return View(owners={s.netuid: s.owner_coldkey for s in subnets if s.netuid != ROOT_NETUID}, members=members,
                stakes=stakes, hotkey_owner=owners)


@dataclass(frozen=True, slots=True)
class Attempt:
    kind: str                 # a call name, or "tampered:<how>"
    signer: Keypair
    call: chain_pb2.Call
    precheck: bool = True     # False: skip the call's state checks at submit, so it can fail in its block
    tamper: str = ""


def _by_address(address: str) -> Keypair:
    return next(k for k in ACCOUNTS if k.ss58_address == address)


def propose(pick: Chooser, view: View) -> Attempt:
    """One extrinsic. Two times in three it is aimed (a signer that owns the hotkey, a subnet that
    exists and its owner, a registered uid, a stake that exists), else its keys are random; either
    way each field's choices include invalid values and amounts past balances. Some are tampered."""
    kind = pick.choice((*KINDS, "tampered"))
    if kind == "tampered":
        to = pick.choice(COLDKEYS)
        return Attempt(f"tampered:{(how := pick.choice(TAMPERS))}", pick.choice(COLDKEYS),
                       chain_pb2.Call(transfer=chain_pb2.Transfer(dest=to.ss58_address, amount=TAO)), tamper=how)
    aimed = pick.choice((True, True, False))
    precheck = pick.choice((True, True, False))
    coldkey = pick.choice(COLDKEYS if aimed else COLDKEYS + POOR)
    hotkey = pick.choice(HOTKEYS)
    netuids = sorted(view.owners)
    netuid = pick.choice(netuids) if aimed and netuids else pick.choice([1, ROOT_NETUID, 7, MAX_NETUID + 1])
    members = view.members.get(netuid, [])
    if aimed and view.hotkey_owner and kind in ("add_stake", "set_delegate_take", "root_register"):
        # an owned hotkey signed for by its owner (or, for add_stake, any coldkey when it is a delegate)
        hotkey = _by_address(pick.choice(sorted(view.hotkey_owner)))
        coldkey = _by_address(view.hotkey_owner[hotkey.ss58_address])
    C = chain_pb2
    if kind == "transfer":
        dest = pick.choice(COLDKEYS + POOR if aimed else ACCOUNTS)
        amount = pick.choice([TAO, 1, 125_000, 50 * TAO, 10**15, 0, MAX_AMOUNT_RAO + 1])
        call = C.Call(transfer=C.Transfer(dest=dest.ss58_address, amount=amount))
    elif kind == "register_network":
        call = C.Call(register_network=C.RegisterNetwork(
            task=pick.choice([1, 2, 3, 0, 9]), name=pick.choice(["sn", "", "x" * 65]), hotkey=hotkey.ss58_address))
    elif kind == "set_hyperparameter":
        bounds = hyperparameter_bounds(ECONOMICS)
        name = pick.choice([*sorted(bounds), "tempo", "bogus"])
        b = bounds.get(name, bounds["tempo"])
        value = pick.choice([min(b.high, b.low + 3), b.low, b.high, b.high + 1, max(0, b.low - 1)])
        if name == "tempo":
            value = pick.choice([1, 2, 3, 0])
        owner = view.owners.get(netuid)
        coldkey = _by_address(owner) if owner and aimed else coldkey
        call = C.Call(set_hyperparameter=C.SetHyperparameter(netuid=netuid, name=name, value=value))
    elif kind == "burned_register":
        max_burn = pick.choice([0, 0, 1, MAX_AMOUNT_RAO + 1])
        call = C.Call(burned_register=C.BurnedRegister(netuid=netuid, hotkey=hotkey.ss58_address, max_burn=max_burn))
    elif kind == "serve_axon":
        signer = _by_address(pick.choice(members)) if members and aimed else hotkey
        call = C.Call(serve_axon=C.ServeAxon(netuid=netuid, host=pick.choice(["10.0.0.1", "miner.example", "", "a b"]),
                                             port=pick.choice([8091, 65_535, 0, 70_000])))
        return Attempt(kind, signer, call, precheck=precheck)
    elif kind == "add_stake":
        amount = pick.choice([TAO, 1, 50 * TAO, 10**15, 0])
        call = C.Call(add_stake=C.AddStake(hotkey=hotkey.ss58_address, amount=amount))
    elif kind == "remove_stake":
        staked = view.stakes.get(coldkey.ss58_address, {})
        target = pick.choice(sorted(staked)) if aimed and staked else hotkey.ss58_address
        have = staked.get(target, 0)
        amount = pick.choice([max(1, have // 2), have, 1, have + 1, 0])
        call = C.Call(remove_stake=C.RemoveStake(hotkey=target, amount=amount))
    elif kind == "set_delegate_take":
        call = C.Call(set_delegate_take=C.SetDelegateTake(hotkey=hotkey.ss58_address,
                                                          take=pick.choice([0, 5_000, 11_796, 11_797])))
    elif kind == "set_weights":
        signer = _by_address(pick.choice(members)) if members and aimed else hotkey
        count = pick.randint(1, 3)
        if members and aimed:  # distinct existing uids, one weight each
            uids = sorted({pick.randint(0, len(members) - 1) for _ in range(count)})
            weights = [pick.choice([1, 100, 65_535, 0]) for _ in uids]
        else:
            uids = [pick.randint(0, len(members)) for _ in range(count)]
            weights = [pick.choice([1, 65_535, 0, 65_536]) for _ in range(pick.choice([count, count + 1]))]
        call = C.Call(set_weights=C.SetWeights(netuid=netuid, uids=uids, weights=weights,
                                               version_key=pick.choice([0, 0, MAX_AMOUNT_RAO])))
        return Attempt(kind, signer, call, precheck=precheck)
    elif kind in ("commit_weights", "reveal_weights"):
        signer = _by_address(pick.choice(members)) if members and aimed else hotkey
        uids, weights, salt = pick.choice(CR_ROWS)
        if kind == "reveal_weights":
            call = C.Call(reveal_weights=C.RevealWeights(netuid=netuid, uids=uids, weights=weights, salt=salt))
        else:
            digest = weight_commit_hash(public_key(signer.ss58_address), netuid, uids, weights, salt, 0)
            call = C.Call(commit_weights=C.CommitWeights(netuid=netuid, commit_hash=pick.choice([digest, digest[:31]])))
        return Attempt(kind, signer, call, precheck=precheck)
    elif kind == "root_register":
        call = C.Call(root_register=C.RootRegister(hotkey=hotkey.ss58_address))
    else:  # set_root_weights
        root = view.members.get(ROOT_NETUID, [])
        signer = _by_address(pick.choice(root)) if root and aimed else hotkey
        count = pick.randint(1, 2)
        targets = [pick.choice(netuids) if aimed and netuids else pick.choice([1, 0, 7]) for _ in range(count)]
        weights = [pick.choice([1, 3, 65_535, 0]) for _ in targets]
        call = C.Call(set_root_weights=C.SetRootWeights(netuids=targets, weights=weights))
        return Attempt(kind, signer, call, precheck=precheck)
    return Attempt(kind, coldkey, call, precheck=precheck)


def sign_attempt(a: Attempt, nonce: int, chain_id: bytes) -> chain_pb2.Extrinsic:
    """Sign as a client would, then break it the way a.tamper says."""
    if a.tamper == "stale_nonce":
        nonce = nonce - 1 if nonce > 0 else nonce + 2
    elif a.tamper == "future_nonce":
        nonce += 1
    payload = chain_pb2.ExtrinsicPayload(signer=a.signer.ss58_address, nonce=nonce, chain_id=chain_id, call=a.call)
    if a.tamper == "chain_id":
        payload.chain_id = blake2_256(b"another agora network")
    elif a.tamper == "short_chain_id":
        payload.chain_id = chain_id[:20]
    elif a.tamper == "tip":
        payload.tip = 1
    elif a.tamper == "no_call":
        payload.ClearField("call")
    data = payload.SerializeToString(deterministic=True)
    if a.tamper == "garbage_payload":
        data = b"\xff\xff" + data
    signature = (COLDKEYS[(COLDKEYS.index(a.signer) + 1) % len(COLDKEYS)] if a.tamper == "impostor"
                 else a.signer).sign(data)
    if a.tamper == "signature":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return chain_pb2.Extrinsic(payload=data, signature=signature)


async def submit_attempt(local: LocalChain, a: Attempt) -> tuple[chain_pb2.Extrinsic, bytes | AgoraError]:
    """The gRPC submission path without the transport: check_extrinsic, then the ledger's submit.
    Returns the signed extrinsic and its hash once queued, or the refusal."""
    xt = sign_attempt(a, await local.nonce(a.signer.ss58_address), local.chain_id)
    return xt, await submit_signed(local, xt, precheck=a.precheck)


async def submit_signed(local: LocalChain, xt: chain_pb2.Extrinsic, *, precheck: bool = True) -> bytes | AgoraError:
    try:
        checked = check_extrinsic(xt, local.chain_id, local.fee, local.ledger.params)
        await local.ledger.submit(checked, local.pool, precheck=precheck)
    except AgoraError as refused:
        return refused
    return checked.hash


async def full_digest(ledger: Ledger) -> str:
    """Every key of the network, the pool and statuses included."""
    return await state_digest(ledger.redis, ledger.keys, production=True)


async def new_network(redis_url: str, *, tag: str = "rel") -> LocalChain:
    """A fresh network on its own prefix with the dev accounts funded, and one subnet (Alice's,
    owner hotkey 0, which holds uid 0 and stake) set up to run epochs every few blocks."""
    settings = ChainSettings(redis_url=redis_url, network=f"{tag}-{uuid.uuid4().hex[:10]}",
                             genesis_balances=dev_balances(), economics=ECONOMICS)
    local = await LocalChain.create(settings)
    alice, hotkey = COLDKEYS[0], HOTKEYS[0]
    call = chain_pb2.Call(register_network=chain_pb2.RegisterNetwork(task=1, name="reliability",
                                                                     hotkey=hotkey.ss58_address))
    out = await local.run(alice, call)
    assert out.ok, out.error
    await local.submit(alice, chain_pb2.Call(burned_register=chain_pb2.BurnedRegister(
        netuid=1, hotkey=hotkey.ss58_address)))
    for name, value in SUBNET_SETUP.items():
        await local.submit(alice, chain_pb2.Call(set_hyperparameter=chain_pb2.SetHyperparameter(
            netuid=1, name=name, value=value)))
    await local.submit(alice, chain_pb2.Call(add_stake=chain_pb2.AddStake(hotkey=hotkey.ss58_address,
                                                                          amount=1_000 * TAO)))
    await local.produce()
    return local


async def drop_network(ledger: Ledger) -> None:
    """Delete every key of a test network, so long soaks do not fill the shared Redis."""
    batch = [k async for k in ledger.redis.scan_iter(match=f"{ledger.keys.prefix}:*", count=1000)]
    for i in range(0, len(batch), 500):
        await ledger.redis.unlink(*batch[i:i + 500])


# ---- the audit of one block ----


@dataclass(frozen=True, slots=True)
class Snapshot:
    economy: Economy
    free: dict[str, int]
    nonces: dict[str, int]


async def snapshot(ledger: Ledger, addresses: list[str]) -> Snapshot:
    return Snapshot(economy=await ledger.economy(), free=await ledger.all_balances(),
                    nonces={a: (await ledger.account(a)).nonce for a in addresses})


@dataclass
class Expected:
    """What a block's events say it changed."""

    free: Counter[str] = field(default_factory=Counter)
    nonces: Counter[str] = field(default_factory=Counter)
    burned: int = 0
    minted: int = 0
    locked: int = 0
    stake: int = 0
    paid: int = 0                            # epoch payouts: pending emission turned into stake


def expected_changes(block: chain_pb2.Block) -> tuple[Expected, list[str]]:
    """(the changes the events add up to, problems with the events themselves): every extrinsic
    ends in exactly one ExtrinsicSuccess or ExtrinsicFailed, and a failed one did nothing but
    pay its fee."""
    e, problems = Expected(), []
    for xt in block.extrinsics:
        e.nonces[chain_pb2.ExtrinsicPayload.FromString(xt.payload).signer] += 1
    by_index: dict[int, list[str]] = {}
    for ev in block.events:
        a = ev.attributes
        if ev.HasField("extrinsic_index"):
            by_index.setdefault(ev.extrinsic_index, []).append(ev.name)
        if ev.name == "FeeBurned":
            e.free[a["who"]] -= int(a["amount"])
            e.burned += int(a["amount"])
        elif ev.name == "Transfer":
            e.free[a["from"]] -= int(a["amount"])
            e.free[a["to"]] += int(a["amount"])
        elif ev.name == "StakeAdded":
            e.free[a["coldkey"]] -= int(a["amount"])
            e.stake += int(a["amount"])
        elif ev.name == "StakeRemoved":
            e.free[a["coldkey"]] += int(a["amount"])
            e.stake -= int(a["amount"])
        elif ev.name == "NeuronRegistered":
            e.free[a["coldkey"]] -= int(a["burn"])
            e.burned += int(a["burn"])
        elif ev.name == "NetworkRegistered":
            e.free[a["owner"]] -= int(a["locked"])
            e.locked += int(a["locked"])
        elif ev.name == "Emission":
            e.minted += int(a["amount"])
        elif ev.name == "EpochRun":
            e.paid += int(a["emission"]) - int(a["carried"])
    for index in range(len(block.extrinsics)):
        names = by_index.get(index, [])
        ends = [n for n in names if n in ("ExtrinsicSuccess", "ExtrinsicFailed")]
        if len(ends) != 1 or names[-1] != ends[0]:
            problems.append(f"extrinsic {index} of block {block.header.number}: events {names}")
        elif ends[0] == "ExtrinsicFailed" and set(names) - {"FeeBurned", "ExtrinsicFailed"}:
            problems.append(f"failed extrinsic {index} of block {block.header.number} had effects: {names}")
    return e, problems


async def audit_block(ledger: Ledger, before: Snapshot, block: chain_pb2.Block) -> tuple[Snapshot, list[str]]:
    """Compare the state after `block` with `before` plus what its events say; also the ledger's
    own invariants (issuance == free + stake + locked + pending, and genesis + minted - burned,
    stake mirrors, no negative balance or stake). Returns (the state after, problems)."""
    e, problems = expected_changes(block)
    after = await snapshot(ledger, sorted(set(before.nonces) | set(e.nonces)))
    b, a = before.economy, after.economy

    def expect(what: str, got: int, want: int) -> None:
        if got != want:
            problems.append(f"block {block.header.number}: {what} is {got}, expected {want}")

    expect("burned", a.burned, b.burned + e.burned)
    expect("minted", a.minted, b.minted + e.minted)
    expect("issuance", a.issuance, b.issuance + e.minted - e.burned)
    expect("locked", a.locked, b.locked + e.locked)
    expect("total stake", a.total_stake, b.total_stake + e.stake + e.paid)
    expect("pending emission", a.pending_emission, b.pending_emission + e.minted - e.paid)
    expect("genesis issuance", a.genesis_issuance, b.genesis_issuance)
    for address in sorted(set(before.free) | set(after.free) | set(e.free)):
        expect(f"free of {address}", after.free.get(address, 0), before.free.get(address, 0) + e.free[address])
    for address in sorted(after.nonces):
        expect(f"nonce of {address}", after.nonces[address], before.nonces.get(address, 0) + e.nonces[address])
    problems += [f"block {block.header.number}: {p}" for p in await ledger.check_invariants()]
    problems += event_bytes_problems(block)
    return after, problems


def event_bytes_problems(block: chain_pb2.Block) -> list[str]:
    """Each extrinsic's events must fit the allowance blocks are cut by (services/chain/pool.py)."""
    sizes: Counter[int] = Counter()
    for event in block.events:
        if event.HasField("extrinsic_index"):
            sizes[event.extrinsic_index] += event.ByteSize() + 4   # the field's tag and length in Block
    return [f"block {block.header.number}: extrinsic {i} ({block.extrinsics[i].ByteSize()} bytes) has "
            f"{size} bytes of events, over the {EVENT_BYTES_PER_EXTRINSIC}-byte allowance"
            for i, size in sorted(sizes.items()) if size > EVENT_BYTES_PER_EXTRINSIC]

