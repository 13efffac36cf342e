"""Each call's script and its own KEYS and ARGV (after the common ones, scripts/_call_begin.lua).

Pure: turns a checked extrinsic into script arguments. Row normalisation for weights happens
here, on the call's data alone; everything that depends on state is the script's job.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.chain.codec import pack_row, weight_commit_hash
from services.chain.extrinsics import CheckedExtrinsic
from services.chain.ledger.keys import StateKeys
from services.chain.subnets import (
    DEFAULT_TAKE_U16,
    INITIAL_BURN_RAO,
    MAX_UNREVEALED_COMMITS,
    REGISTRATIONS_PER_INTERVAL_FACTOR,
    ROOT_NETUID,
    TASK_BY_ENUM,
    Hyperparameters,
    NetworkParams,
    clamp_burn,
    hyperparameter_bounds,
)
from services.chain.yuma import max_upscale_rows_u16
from services.common.keys import public_key
from services.common.units import U16_MAX

# call -> shared script parts it needs between _call_begin and the call's own file
CALL_SCRIPTS: dict[str, tuple[str, ...]] = {
    "transfer": (),
    "register_network": (),
    "set_hyperparameter": (),
    "burned_register": ("_register",),
    "serve_axon": (),
    "add_stake": (),
    "remove_stake": (),
    "set_delegate_take": (),
    "set_weights": ("_weights",),
    "commit_weights": ("_weights",),
    "reveal_weights": ("_weights",),
    "root_register": ("_register",),
    "set_root_weights": (),
}

SUBMIT_CHECKED = frozenset(CALL_SCRIPTS) - {"transfer"}
"""Calls whose script checks run at submit too; a transfer's only state check is the balance,
which submit.lua makes against what the signer already has queued."""


def subnet_defaults(net: NetworkParams) -> Hyperparameters:
    """A new subnet's hyperparameters: Bittensor's defaults, tempo at least the network minimum."""
    return Hyperparameters(tempo=max(Hyperparameters().tempo, net.min_tempo))


def weight_row(targets: list[int], weights: list[int]) -> tuple[bytes, int]:
    """(stored row, largest weight's share of the row in u16). The row is sorted by target and
    max-upscaled so its largest weight is 65535, as Bittensor stores weights."""
    order = np.argsort(np.asarray(targets))
    t = np.asarray(targets, dtype=np.int64)[order]
    w = np.asarray(weights, dtype=np.int64)[order]
    share = int(w.max()) * U16_MAX // int(w.sum())
    return pack_row(t, max_upscale_rows_u16(w.astype(np.float64))), share


def call_invocation(k: StateKeys, net: NetworkParams, xt: CheckedExtrinsic) -> tuple[list[str], list[Any]]:
    """(call KEYS, call ARGV) of xt's script."""
    name, signer = xt.call_name, xt.signer
    c = getattr(xt.call, name)
    if name == "transfer":
        return [], [c.dest, c.amount]
    if name == "register_network":
        keys = [k.subnets, k.hotkey_owner, k.locked]
        for netuid in range(1, net.max_subnets + 1):
            sn = k.subnet(netuid)
            keys += [sn.info, sn.hp]
        hp = subnet_defaults(net)
        args: list[Any] = [TASK_BY_ENUM[c.task], c.name, c.hotkey, net.lock_cost_rao,
                           clamp_burn(INITIAL_BURN_RAO, hp), net.max_subnets]
        for field, value in hp.to_hash().items():
            args += [field, value]
        return keys, args
    if name == "set_hyperparameter":
        sn = k.subnet(c.netuid)
        bound = hyperparameter_bounds(net)[c.name]
        return [k.subnets, sn.info, sn.hp], [c.netuid, c.name, c.value, bound.low, bound.high]
    if name == "burned_register":
        return [k.subnets, k.hotkey_owner, *k.subnet(c.netuid).neuron_keys()], [
            c.netuid, c.hotkey, c.max_burn, REGISTRATIONS_PER_INTERVAL_FACTOR]
    if name == "serve_axon":
        sn = k.subnet(c.netuid)
        return [k.subnets, sn.uids, sn.axons, sn.hp], [c.netuid, c.host, c.port, c.protocol or "grpc", c.version]
    if name == "add_stake":
        return [k.hotkey_owner, k.delegate_take, k.stake_total, k.nominators(c.hotkey), k.stakes_of(signer),
                k.total_stake], [c.hotkey, c.amount]
    if name == "remove_stake":
        return [k.stake_total, k.nominators(c.hotkey), k.stakes_of(signer), k.total_stake], [c.hotkey, c.amount]
    if name == "set_delegate_take":
        return [k.hotkey_owner, k.delegate_take, k.delegate_take_block], [
            c.hotkey, c.take, DEFAULT_TAKE_U16, net.delegate_take_rate_limit]
    if name in ("set_weights", "commit_weights", "reveal_weights"):
        sn = k.subnet(c.netuid)
        keys = [k.subnets, sn.info, sn.hp, sn.uids, sn.last_update, sn.permit, sn.weights, k.stake_total]
        if name == "commit_weights":
            return [*keys, sn.commits], [c.netuid, c.commit_hash.hex(), MAX_UNREVEALED_COMMITS]
        row, share = weight_row(list(c.uids), list(c.weights))
        only = str(c.uids[0]) if len(c.uids) == 1 else ""
        args = [c.netuid, row, len(c.uids), max(c.uids), share, only, c.version_key]
        if name == "set_weights":
            return keys, args
        revealed = weight_commit_hash(public_key(signer), c.netuid, c.uids, c.weights, c.salt, c.version_key)
        return [*keys, sn.commits], [*args, revealed.hex()]
    if name == "root_register":
        return [k.hotkey_owner, k.stake_total, *k.subnet(ROOT_NETUID).neuron_keys()], [c.hotkey]
    if name == "set_root_weights":
        root = k.subnet(ROOT_NETUID)
        row, _ = weight_row(list(c.netuids), list(c.weights))
        return [k.subnets, root.hp, root.uids, root.last_update, root.weights], [
            row, c.version_key, *c.netuids]
    raise ValueError(f"no script applies call {name!r}")  # check_extrinsic lets none through
