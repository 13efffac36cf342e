"""Subnets as data: tasks, hyperparameters with Bittensor's defaults and the bounds an owner may set,
the network-wide economic parameters from genesis, the epoch schedule and the burn adjustment.

Pure: no Redis. The apply scripts get defaults and bounds from here, so they live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from services.chain.errors import HyperparameterOutOfRange, UnknownHyperparameter
from services.common.units import MAX_AMOUNT_RAO, RAO_PER_TAO

ROOT_NETUID = 0
MAX_UIDS = 4096                      # per subnet, the most Yuma is asked to handle
MAX_NETUID = 4095
ALPHA_HIGH_MIN = 52_428                 # u16 0.8: the least alpha_high subtensor accepts
DEFAULT_TAKE_U16 = 11_796            # 18%: a delegate's take unless it sets one
MAX_TAKE_U16 = 11_796                # Bittensor's MaxDelegateTake
OWNER_CUT_U16 = 11_796               # 18% of each epoch's emission goes to the subnet owner
INITIAL_BURN_RAO = RAO_PER_TAO       # Bittensor's DefaultBurn, clamped to [min_burn, max_burn]
REGISTRATIONS_PER_INTERVAL_FACTOR = 3  # at most 3 x target registrations per adjustment interval
MAX_COMMIT_REVEAL_PERIOD = 100       # subtensor's bound on commit_reveal_period (tempos)
MAX_UNREVEALED_COMMITS = 10          # per hotkey and subnet, as subtensor

# task name -> (proto enum value, metric)
TASKS: dict[str, tuple[int, str]] = {
    "next-token": (1, "loss"),
    "translation": (2, "bleu"),
    "embedding": (3, "retrieval-accuracy"),
}
TASK_BY_ENUM = {value: name for name, (value, _) in TASKS.items()}


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """Economic settings every replica agrees on (part of the genesis configuration)."""

    lock_cost_rao: int = 100 * RAO_PER_TAO
    """Moved from the owner's free balance into the subnet's lock by register_network."""
    min_tempo: int = 360
    """Lowest tempo an owner may set; dev networks lower it to run epochs every few seconds."""
    max_subnets: int = 32
    """Non-root subnets the network holds."""
    root_max_validators: int = 64
    """Members of the root subnet."""
    root_weights_rate_limit: int = 100
    """Blocks between two set_root_weights of one root member (counted from its registration too)."""
    delegate_take_rate_limit: int = 216_000
    """Blocks between two raises of a delegate's take (Bittensor's TxDelegateTakeRateLimit)."""

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> NetworkParams:
        """From a genesis configuration; a chain created before these settings gets the defaults."""
        economics = config.get("economics") or {}
        if not isinstance(economics, Mapping):
            raise ValueError(f"economics must be an object, got {type(economics).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in economics.items() if k in known})

    def to_config(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """A subnet's hyperparameters in the chain's integer units, Bittensor's defaults."""

    tempo: int = 360
    """Blocks between epochs: an epoch runs when (block + netuid + 1) % (tempo + 1) == 0."""
    kappa: int = 32_767
    """u16: stake share that must back a weight for it to count (consensus)."""
    immunity_period: int = 4096
    """Blocks after registration during which a uid is pruned only if every uid is immune."""
    max_allowed_uids: int = 256
    max_allowed_validators: int = 64
    """The top this many uids by stake hold validator permits."""
    min_allowed_weights: int = 1
    """A set_weights must name at least min(n, this) uids."""
    max_weights_limit: int = 65_535
    """u16: the largest share a single weight may have in a normalised row."""
    weights_rate_limit: int = 100
    """Blocks between two set_weights of one uid (counted from its registration too)."""
    weights_version: int = 0
    """set_weights must carry a version_key at least this."""
    bonds_moving_average: int = 900_000
    """Millionths: bonds EMA keeps this much of the old bonds each epoch."""
    min_burn: int = 500_000
    max_burn: int = 100 * RAO_PER_TAO
    target_regs_per_interval: int = 2
    """The burn rises when an interval has more registrations than this, falls when fewer."""
    adjustment_interval: int = 100
    """Blocks between burn adjustments."""
    activity_cutoff: int = 5000
    """A uid whose last update is older than this many blocks does not vote."""
    serving_rate_limit: int = 50
    """Blocks between two serve_axon of one uid."""
    bonds_penalty: int = 65_535
    """u16: how much of a weight above consensus is cut before it builds bonds (65535: all of it)."""
    yuma_version: int = 2
    """2: bonds scale with stake (Bittensor's Yuma3On false); 3: bonds are an EMA of the weights
    in [0, 1] and stake enters at payout, so an early supporter of a rising miner keeps its claim."""
    liquid_alpha_enabled: int = 0
    """Yuma 3: 1 for a per-bond EMA rate between alpha_low and alpha_high (fast when a validator
    moves ahead of consensus), 0 for the fixed rate 1 - bonds_moving_average."""
    alpha_low: int = 45_875
    """u16: liquid alpha's lowest rate (0.7)."""
    alpha_high: int = 58_982
    """u16: liquid alpha's highest rate (0.9)."""
    alpha_sigmoid_steepness: int = 1000
    """How sharply liquid alpha moves from low to high as a bond departs from consensus."""
    commit_reveal_weights_enabled: int = 0
    """1: validators commit a hash of their weights and reveal them commit_reveal_period tempos
    later (set_weights is refused), so weights are public only once they are stale and copying them
    pays less than honest work. 0 (the default here, so a new subnet works with plain set_weights;
    Bittensor's mainnet subnets run with it on): set_weights."""
    commit_reveal_period: int = 1
    """Commit-reveal: the reveal of a commit made in epoch-index k must land in epoch-index k + this
    (an epoch-index is the tempo a block is in, (block + netuid + 1) // (tempo + 1)); later, it expired."""

    @classmethod
    def from_hash(cls, raw: Mapping[str, str | int]) -> Hyperparameters:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in raw.items() if k in known})

    def to_hash(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Bound:
    name: str
    low: int
    high: int
    description: str


def hyperparameter_bounds(net: NetworkParams) -> dict[str, Bound]:
    """Static bounds an owner may set each hyperparameter within (inclusive). Bounds that depend on
    state (min_burn <= max_burn, max_allowed_validators <= max_allowed_uids, max_allowed_uids >= the
    registered uids) are checked by the apply script."""
    table = [
        Bound("tempo", net.min_tempo, 50_400, "blocks between epochs"),
        Bound("kappa", 32_767, 65_535, "u16 stake share that must back a weight (consensus majority)"),
        Bound("immunity_period", 0, 65_535, "blocks a new uid is protected from pruning"),
        Bound("max_allowed_uids", 1, MAX_UIDS, "uids the subnet holds"),
        Bound("max_allowed_validators", 1, MAX_UIDS, "uids holding validator permits (top stake)"),
        Bound("min_allowed_weights", 1, MAX_UIDS, "uids a set_weights must name (at most n)"),
        Bound("max_weights_limit", 1, 65_535, "u16 cap on one weight's share of a row"),
        Bound("weights_rate_limit", 0, 100_800, "blocks between set_weights of one uid"),
        Bound("weights_version", 0, MAX_AMOUNT_RAO, "minimum version_key of set_weights"),
        Bound("bonds_moving_average", 0, 975_000, "millionths of old bonds kept per epoch"),
        Bound("min_burn", 0, 100 * RAO_PER_TAO, "rao: lowest registration burn"),
        Bound("max_burn", 1, 1_000 * RAO_PER_TAO, "rao: highest registration burn"),
        Bound("target_regs_per_interval", 1, MAX_UIDS, "registrations per interval the burn aims at"),
        Bound("adjustment_interval", 1, 50_400, "blocks between burn adjustments"),
        Bound("activity_cutoff", 1, 100_800, "blocks after which a silent uid stops voting"),
        Bound("serving_rate_limit", 0, 50_400, "blocks between serve_axon of one uid"),
        Bound("bonds_penalty", 0, 65_535, "u16 share of out-of-consensus weight cut before it bonds"),
        Bound("yuma_version", 2, 3, "Yuma consensus variant: 2 (stake-scaled bonds) or 3 (weight-EMA bonds)"),
        Bound("liquid_alpha_enabled", 0, 1, "Yuma 3: 1 for a per-bond EMA rate between alpha_low and alpha_high"),
        # subtensor's do_set_alpha_values: alpha_high >= 0.8, 0 < alpha_low < 0.8 (so low < high)
        Bound("alpha_low", 1, ALPHA_HIGH_MIN - 1, "u16 lowest liquid-alpha rate"),
        Bound("alpha_high", ALPHA_HIGH_MIN, 65_535, "u16 highest liquid-alpha rate"),
        Bound("alpha_sigmoid_steepness", 1, 10_000, "steepness of liquid alpha's sigmoid"),
        Bound("commit_reveal_weights_enabled", 0, 1, "1: weights are committed as a hash, revealed later"),
        Bound("commit_reveal_period", 1, MAX_COMMIT_REVEAL_PERIOD, "tempos from a weights commit to its reveal"),
    ]
    return {b.name: b for b in table}


def check_hyperparameter(name: str, value: int, net: NetworkParams) -> Bound:
    """Stateless check of an owner's new value; the apply script re-checks what depends on state."""
    bounds = hyperparameter_bounds(net)
    bound = bounds.get(name)
    if bound is None:
        raise UnknownHyperparameter(f"no hyperparameter {name!r}; known: {', '.join(sorted(bounds))}")
    if not bound.low <= value <= bound.high:
        raise HyperparameterOutOfRange(f"{name} {value} is out of range: allowed {bound.low}..{bound.high}")
    return bound


def root_hyperparameters(net: NetworkParams) -> Hyperparameters:
    """The root subnet's: its size is the network's root validator count; the rest as defaults."""
    return Hyperparameters(max_allowed_uids=net.root_max_validators,
                           max_allowed_validators=net.root_max_validators,
                           weights_rate_limit=net.root_weights_rate_limit)


# ---- schedule ----


def is_epoch_block(block: int, netuid: int, tempo: int) -> bool:
    """Bittensor's static schedule: (block + netuid + 1) % (tempo + 1) == 0, so subnets with the
    same tempo run their epochs on different blocks."""
    return tempo > 0 and (block + netuid + 1) % (tempo + 1) == 0


def next_epoch_block(after_block: int, netuid: int, tempo: int) -> int:
    """The first block > after_block on which the subnet's epoch runs (0 if tempo is 0)."""
    if tempo <= 0:
        return 0
    first = after_block + 1
    return first + (-(first + netuid + 1)) % (tempo + 1)


def epoch_index(block: int, netuid: int, tempo: int) -> int:
    """The tempo `block` falls in: epoch-index k starts on an epoch block and holds tempo + 1 blocks
    (subtensor's get_epoch_index)."""
    return (block + netuid + 1) // (tempo + 1)


def reveal_window(commit_block: int, netuid: int, tempo: int, period: int) -> tuple[int, int]:
    """(first, last) block a reveal of a commit made in `commit_block` may land in: the whole
    epoch-index `period` tempos after the commit's."""
    first = (epoch_index(commit_block, netuid, tempo) + period) * (tempo + 1) - netuid - 1
    return first, first + tempo


# ---- registration burn ----


def adjusted_burn(burn_rao: int, registrations: int, target: int, min_burn: int, max_burn: int) -> int:
    """Bittensor's upgraded_burn (adjustment alpha 0): burn * (regs + target) / (2 target), clamped:
    at target registrations it holds, with none it halves, with 3 x target it doubles."""
    new = burn_rao * (registrations + target) // (2 * target)
    return max(min_burn, min(max_burn, new))


def clamp_burn(burn_rao: int, hp: Hyperparameters) -> int:
    return max(hp.min_burn, min(hp.max_burn, burn_rao))
