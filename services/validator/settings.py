"""ValidatorSettings: everything a validator process is told (the CLI fills it from flags and env)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import metadata

from services.common.errors import InvalidRequest

VALIDATOR_PROTOCOL = "agora-validator"   # the axon protocol a validator serves under; miners use anything else


def _version_key() -> int:
    """The software's version as set_weights' version_key: 0.1.0 -> 1000 (major * 10^6 + minor * 10^3 + patch),
    so a subnet owner can require an upgrade by raising weights_version."""
    try:
        parts = [int(p) for p in metadata.version("agora").split(".")[:3]]
    except (metadata.PackageNotFoundError, ValueError):
        return 0
    major, minor, patch = [*parts, 0, 0][:3]
    return major * 1_000_000 + minor * 1_000 + patch


VERSION_KEY = _version_key()


@dataclass(frozen=True, slots=True)
class ValidatorSettings:
    netuid: int = 1
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None          # None: ~/.bittensor/wallets, as btcli
    chain: str = "127.0.0.1:50051"          # the chain's gRPC address
    data: str = "offline"                   # held-out data: offline | jsonl:PATH | hf:PATH[:CONFIG] (see datasets.py)
    data_seed: int = 0                      # the held-out split's seed (which items are validators' only)
    seed: int | None = None                 # the rounds' sampling seed; None: a fresh secret per start
    host: str = "127.0.0.1"                 # where the gRPC server listens; 0.0.0.0 for all interfaces
    port: int = 8092
    external_host: str = ""                 # the host published with serve_axon; "": host (127.0.0.1 for 0.0.0.0)
    metrics_port: int | None = 9102         # None: no /metrics endpoint
    round_items: int = 16                   # items per round, the same for every miner
    timeout_s: float = 12.0                 # a miner's deadline in a round; later is a timeout (score 0)
    round_interval_s: float = 12.0          # least time from one round's start to the next's
    alpha: float = 0.1                      # EMA weight of the newest round
    score_power: float = 2.0                # weights: the average's score ** this (> 1 favours the best)
    top_k: int = 20                         # next-token candidates asked per prefix
    weights_interval_blocks: int = 0        # blocks between set_weights; 0: the subnet's tempo
    version_key: int = VERSION_KEY          # sent with set_weights; below the subnet's weights_version: no weights
    fee_rao: int = 1_000_000                # a user's query costs this (0.001 TAO); 0: queries are free
    query_timeout_s: float = 30.0           # a user's query, all attempts, after payment
    attempt_timeout_s: float = 10.0         # one miner's deadline within a query; then the next miner
    max_attempts: int = 3                   # miners tried per query
    redis_url: str | None = None            # keep the EMA in Redis across restarts; None: in memory
    serve_axon: bool = True                 # publish this validator's endpoint on the subnet at start

    def __post_init__(self) -> None:
        if self.round_items < 1 or self.top_k < 1 or self.max_attempts < 1:
            raise InvalidRequest("round_items, top_k and max_attempts must be at least 1")
        if min(self.timeout_s, self.query_timeout_s, self.attempt_timeout_s) <= 0 or self.round_interval_s < 0:
            raise InvalidRequest("timeouts must be positive and round_interval_s not negative")
        if not self.score_power > 0:
            raise InvalidRequest(f"score_power {self.score_power} must be positive")
        if not 0 < self.alpha <= 1:
            raise InvalidRequest(f"alpha {self.alpha} is not in (0, 1]")
        if self.fee_rao < 0:
            raise InvalidRequest(f"fee_rao {self.fee_rao} is negative")

    @property
    def advertised_host(self) -> str:
        if self.external_host:
            return self.external_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "[::]") else self.host

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: object) -> ValidatorSettings:
        """AGORA_VALIDATOR_HOST/PORT, AGORA_METRICS_PORT, AGORA_CHAIN, AGORA_WALLET_PATH, AGORA_DATA,
        AGORA_REDIS_URL, AGORA_VALIDATOR_FEE_RAO; `overrides` (flags) win over the environment."""
        values: dict[str, object] = {}
        table = {
            "host": ("AGORA_VALIDATOR_HOST", str), "port": ("AGORA_VALIDATOR_PORT", int),
            "external_host": ("AGORA_VALIDATOR_EXTERNAL_HOST", str), "metrics_port": ("AGORA_METRICS_PORT", int),
            "chain": ("AGORA_CHAIN", str), "wallet_path": ("AGORA_WALLET_PATH", str), "data": ("AGORA_DATA", str),
            "redis_url": ("AGORA_REDIS_URL", str), "fee_rao": ("AGORA_VALIDATOR_FEE_RAO", int),
        }
        for name, (var, kind) in table.items():
            if env.get(var):
                try:
                    values[name] = kind(env[var])
                except ValueError:
                    raise InvalidRequest(f"{var}={env[var]!r} is not a valid {kind.__name__}") from None
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise InvalidRequest(f"unknown validator settings {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["redis_url"]:
            shown["redis_url"] = "***"   # may carry a password
        return "ValidatorSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"
