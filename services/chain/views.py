"""Chain state records as their protobuf messages: the server's edge, no logic beyond conversion."""

from __future__ import annotations

import numpy as np

from agora.chain.v1 import chain_pb2
from services.chain.ledger import DelegateRow, StakeRow
from services.chain.state import OUT_U16_FIELDS, SubnetSnapshot, SubnetState
from services.chain.subnets import TASKS, NetworkParams, hyperparameter_bounds, reveal_window


def subnet_info(s: SubnetState, net: NetworkParams, head: int) -> chain_pb2.SubnetInfo:
    task, metric = TASKS.get(s.task, (0, ""))
    info = chain_pb2.SubnetInfo(
        netuid=s.netuid, name=s.name, task=task, metric=metric, owner_coldkey=s.owner_coldkey,
        owner_hotkey=s.owner_hotkey, registered_block=s.registered_block, locked=s.locked_rao, n=s.n,
        burn=s.burn_rao, registrations_this_interval=s.regs_interval,
        next_burn_adjustment_block=s.last_adjustment + s.hp.adjustment_interval if s.netuid else 0,
        pending_emission=s.pending_rao, emission_per_block=s.last_emission_rao, last_epoch_block=s.last_epoch,
        next_epoch_block=s.next_epoch_after(head),
    )
    bounds = hyperparameter_bounds(net)
    for name, value in s.hp.to_hash().items():
        b = bounds[name]
        info.hyperparameters.add(name=name, value=value, min=b.low, max=b.high, description=b.description)
    return info


def metagraph(snap: SubnetSnapshot, head: int, *, include_weights: bool, include_bonds: bool) -> chain_pb2.Metagraph:
    s, n = snap.subnet, snap.subnet.n
    m = chain_pb2.Metagraph(netuid=s.netuid, block=head, last_epoch_block=s.last_epoch)
    zeros16 = np.zeros(n, dtype=np.uint16)
    out = {name: snap.out.get(name, zeros16).tolist() for name in OUT_U16_FIELDS}
    emission = snap.out.get("emission", np.zeros(n, dtype=np.uint64)).tolist()
    active = (snap.last_update + s.hp.activity_cutoff >= head).tolist()
    permit, pruning = snap.permit.tolist(), snap.pruning.tolist()
    last_update, reg_block = snap.last_update.tolist(), snap.reg_block.tolist()
    for uid in range(n):
        neuron = m.neurons.add(
            uid=uid, hotkey=snap.hotkeys[uid], coldkey=snap.coldkeys[uid], stake=snap.stake_rao[uid],
            rank=out["rank"][uid], trust=out["trust"][uid], consensus=out["consensus"][uid],
            incentive=out["incentive"][uid], dividends=out["dividends"][uid], emission=emission[uid],
            validator_trust=out["validator_trust"][uid], validator_permit=permit[uid],
            last_update=last_update[uid], registered_block=reg_block[uid], active=active[uid],
            pruning_score=pruning[uid],
        )
        axon = snap.axons.get(uid)
        if axon is not None:
            neuron.axon.CopyFrom(chain_pb2.AxonInfo(host=axon.host, port=axon.port, protocol=axon.protocol,
                                                    version=axon.version, block=axon.block))
        if include_weights and uid in snap.weights:
            targets, values = snap.weights[uid]
            neuron.weights.CopyFrom(chain_pb2.SparseRow(uids=targets.tolist(), values=values.tolist()))
        if include_bonds and uid in snap.bonds:
            targets, values = snap.bonds[uid]
            neuron.bonds.CopyFrom(chain_pb2.SparseRow(uids=targets.tolist(), values=values.tolist()))
        hp = s.hp
        for c in snap.commits.get(snap.hotkeys[uid], []):
            first, last = reveal_window(c.block, s.netuid, hp.tempo, hp.commit_reveal_period)
            if head < last:   # a reveal can still land (in the next block at the latest)
                neuron.commits.add(commit_hash=c.hash, commit_block=c.block, first_reveal_block=first,
                                   last_reveal_block=last)
    return m


def stake_info(coldkey: str, free: int, rows: list[StakeRow]) -> chain_pb2.StakeInfo:
    info = chain_pb2.StakeInfo(coldkey=coldkey, free=free, total_stake=sum(r.amount_rao for r in rows))
    for r in rows:
        info.stakes.add(hotkey=r.hotkey, amount=r.amount_rao, hotkey_owner=r.hotkey_owner,
                        is_delegate=r.take is not None, take=r.take or 0)
    return info


def delegate_info(r: DelegateRow) -> chain_pb2.DelegateInfo:
    return chain_pb2.DelegateInfo(hotkey=r.hotkey, owner=r.owner, take=r.take, total_stake=r.total_stake_rao,
                                  nominators=r.nominators, netuids=r.netuids)
