"""ChainSettings: everything a chain process is told, from flags or AGORA_* environment variables."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from services.chain.pool import BlockLimits, PoolLimits, check_limits
from services.chain.subnets import NetworkParams
from services.common import keys
from services.common.errors import InvalidRequest
from services.common.units import RAO_PER_TAO, check_amount

DEFAULT_TRANSFER_FEE_RAO = 125_000          # 0.000125 TAO, about what a Bittensor transfer costs
DEV_BALANCE_RAO = 1_000_000 * RAO_PER_TAO   # each dev account starts with 1M tokens


@dataclass(frozen=True, slots=True)
class ChainSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    network: str = "local"
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9100
    block_time_ms: int = 12_000             # Bittensor's 12 s; a fraction of a second for dev and tests
    lease_ms: int = 0                       # 0: three block times, at least 1.5 s
    block: BlockLimits = field(default_factory=BlockLimits)   # extrinsics and bytes per block
    pool: PoolLimits = field(default_factory=PoolLimits)      # admission: services/chain/pool.py
    transfer_fee: int = DEFAULT_TRANSFER_FEE_RAO
    genesis_balances: dict[str, int] = field(default_factory=dict)
    producer_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    produce: bool = True                    # False: serve reads and submissions only, never produce
    economics: NetworkParams = field(default_factory=NetworkParams)  # lock cost, min tempo, root size: genesis

    def __post_init__(self) -> None:
        try:
            check_limits(self.pool, self.block)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if urlsplit(self.redis_url).password is not None:
            shown["redis_url"] = "***"   # carries the Redis password
        return "ChainSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def effective_lease_ms(self) -> int:
        return self.lease_ms or max(1500, 3 * self.block_time_ms)

    def genesis_config(self) -> dict:
        """What every replica of one network must agree on; its hash is block 0's digest."""
        return {
            "network": self.network,
            "transfer_fee": self.transfer_fee,
            "ss58_format": keys.SS58_FORMAT,
            "balances": dict(sorted(self.genesis_balances.items())),
            "economics": self.economics.to_config(),
        }


def dev_balances() -> dict[str, int]:
    return {keys.dev_keypair(name).ss58_address: DEV_BALANCE_RAO for name in keys.DEV_ACCOUNTS}


def load_genesis_file(path: Path) -> dict[str, int]:
    """A JSON object {"balances": {"<ss58>": <rao>, ...}}."""
    try:
        data = json.loads(path.read_text())
        balances = data["balances"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"genesis file {path}: {exc}") from None
    return {
        keys.check_address(a, what="genesis address"): check_amount(int(r), what=f"genesis balance of {a}")
        for a, r in balances.items()
    }


def load_genesis_economics(path: Path) -> NetworkParams:
    """The optional "economics" object of a genesis file ({"balances": ..., "economics": {"min_tempo": 10,
    "lock_cost_rao": ..., ...}}); Bittensor-like defaults for whatever it leaves out."""
    try:
        data = json.loads(path.read_text())
        params = NetworkParams.from_config(data)
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"genesis file {path}: economics: {exc}") from None
    if params.min_tempo < 1 or params.max_subnets < 1 or params.root_max_validators < 1:
        raise InvalidRequest(f"genesis file {path}: min_tempo, max_subnets and root_max_validators must be >= 1")
    return params
