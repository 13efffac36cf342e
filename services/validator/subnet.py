"""The validator's view of its subnet, read from the chain in two calls (GetSubnet, GetMetagraph):
the limits set_weights must respect, and which uid serves as a miner where.

A neuron whose axon was served under VALIDATOR_PROTOCOL is a validator's user endpoint, not a miner;
every other served axon is a miner's.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient
from services.chain.subnets import TASK_BY_ENUM
from services.validator.settings import VALIDATOR_PROTOCOL


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a uid serves."""

    uid: int
    hotkey: str
    host: str
    port: int

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class NeuronView:
    uid: int
    hotkey: str
    coldkey: str
    stake_rao: int
    last_update: int        # block of its last weights (or registration): the rate limit counts from it
    incentive: int          # u16, last epoch
    axon: Endpoint | None   # None until it serves one
    protocol: str           # the axon's protocol ("" without one)
    commits: tuple[tuple[bytes, int], ...] = ()   # commit-reveal: its pending (hash, commit block), oldest first

    @property
    def is_validator_endpoint(self) -> bool:
        return self.protocol == VALIDATOR_PROTOCOL


@dataclass(frozen=True, slots=True)
class SubnetView:
    netuid: int
    task: str                 # "next-token" | "translation" | "embedding"
    metric: str
    block: int                # the head when the metagraph was read
    tempo: int
    weights_rate_limit: int
    weights_version: int
    min_allowed_weights: int
    max_weights_limit: int    # u16: the largest share one weight may have in a row
    neurons: tuple[NeuronView, ...]
    commit_reveal: bool = False     # weights go as commit_weights then reveal_weights, not set_weights
    commit_reveal_period: int = 1   # tempos from a commit to its reveal window

    @property
    def n(self) -> int:
        return len(self.neurons)

    def hotkeys(self) -> dict[int, str]:
        return {n.uid: n.hotkey for n in self.neurons}

    def neuron(self, hotkey: str) -> NeuronView | None:
        return next((n for n in self.neurons if n.hotkey == hotkey), None)

    def miners(self, own_hotkey: str) -> list[Endpoint]:
        """Every served miner axon but our own uid's, by uid."""
        return [n.axon for n in self.neurons
                if n.axon is not None and not n.is_validator_endpoint and n.hotkey != own_hotkey]

    def validators(self) -> list[NeuronView]:
        """Neurons serving a validator endpoint, the most staked first."""
        return sorted((n for n in self.neurons if n.axon is not None and n.is_validator_endpoint),
                      key=lambda n: (-n.stake_rao, n.uid))


def view_from_protos(subnet: chain_pb2.SubnetInfo, metagraph: chain_pb2.Metagraph) -> SubnetView:
    hp = {h.name: int(h.value) for h in subnet.hyperparameters}
    neurons = []
    for n in metagraph.neurons:
        served = n.HasField("axon") and n.axon.port > 0 and bool(n.axon.host)
        neurons.append(NeuronView(
            uid=n.uid, hotkey=n.hotkey, coldkey=n.coldkey, stake_rao=n.stake, last_update=n.last_update,
            incentive=n.incentive, axon=Endpoint(n.uid, n.hotkey, n.axon.host, n.axon.port) if served else None,
            protocol=n.axon.protocol if served else "",
            commits=tuple((c.commit_hash, c.commit_block) for c in n.commits),
        ))
    return SubnetView(
        netuid=subnet.netuid, task=TASK_BY_ENUM.get(subnet.task, ""), metric=subnet.metric, block=metagraph.block,
        tempo=hp.get("tempo", 360), weights_rate_limit=hp.get("weights_rate_limit", 100),
        weights_version=hp.get("weights_version", 0), min_allowed_weights=hp.get("min_allowed_weights", 1),
        max_weights_limit=hp.get("max_weights_limit", 65_535), neurons=tuple(neurons),
        commit_reveal=hp.get("commit_reveal_weights_enabled", 0) == 1,
        commit_reveal_period=hp.get("commit_reveal_period", 1),
    )


async def read_subnet(chain: ChainClient, netuid: int) -> SubnetView:
    subnet = await chain.subnet(netuid)
    metagraph = await chain.metagraph(netuid)
    return view_from_protos(subnet, metagraph)
