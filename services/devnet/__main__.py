"""`make run`: Redis (append-only, data kept under .run/), a chain, dev wallets and a stream of
transfers, and a subnet whose validators weight its miners every tempo (subnet_demo.py), shown live
until Ctrl-C, or for RUN_SECONDS seconds and then a summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bittensor_wallet import Keypair

from services.chain.client import ChainClient
from services.common import keys
from services.common.redis_server import RedisServer, free_port
from services.common.units import RAO_PER_TAO, format_tao
from services.devnet import subnet_demo
from services.devnet.processes import Supervisor

RUN_DIR = Path(os.environ.get("AGORA_RUN_DIR", ".run"))
BLOCK_TIME_MS = 250
# Not "devnet": chains made before subnets had a genesis with min tempo 360, and genesis is kept forever
NETWORK = "localnet"


def port_or_free(wanted: int) -> int:
    """The well-known port when it is free (so the README's grpcurl lines work), else any free one."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


CHAIN_PORT = port_or_free(int(os.environ.get("AGORA_CHAIN_PORT", "50051")))
METRICS_PORT = port_or_free(int(os.environ.get("AGORA_CHAIN_METRICS_PORT", "9100")))
# dev-only password for the demo wallets this command creates; real coldkeys get the user's own
DEV_PASSWORD = "agora-dev-password"
DEMO_WALLETS = ("alice-demo", "bob-demo", "carol-demo")


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    first_head: int = -1
    head: int = 0
    transfers_ok: int = 0
    transfers_failed: int = 0
    moved_rao: int = 0


def say(text: str) -> None:
    print(text, flush=True)


def _agora(*args: str) -> dict:
    env = {**os.environ, "AGORA_COLDKEY_PASSWORD": DEV_PASSWORD}
    out = subprocess.run([sys.executable, "-m", "services.cli.main", *args, "--json"], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"agora {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout or "{}")


def ensure_wallets(path: Path) -> list[Keypair]:
    """Create the demo coldkeys once (encrypted, like any coldkey) and unlock them for this run."""
    pairs = []
    for name in DEMO_WALLETS:
        w = keys.wallet(name, path=path)
        if not w.coldkey_file.exists_on_device():
            say(f"  creating wallet {name} (encrypting its coldkey takes a few seconds) ...")
            _agora("wallet", "new-coldkey", "--wallet.name", name, "--wallet.path", str(path), "--n-words", "12")
        pairs.append(keys.unlock_coldkey(w, DEV_PASSWORD))
    return pairs


async def wait_for_chain(client: ChainClient, sup: Supervisor, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check_alive()
        with contextlib.suppress(Exception):
            info = await client.info()
            if info.producer:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the chain did not answer within {timeout:.0f}s; see {RUN_DIR}/logs/chain.log")


async def fund(client: ChainClient, wallets: list[Keypair]) -> None:
    alice = keys.dev_keypair("Alice")
    for kp in wallets:
        if (await client.account(kp.ss58_address)).free < 10 * RAO_PER_TAO:
            r = await client.transfer(alice, kp.ss58_address, 1_000 * RAO_PER_TAO)
            say(f"  funded {kp.ss58_address[:10]}... with 1,000 TAO from //Alice in block {r.status.block_number}")


async def send_transfers(client: ChainClient, wallets: list[Keypair], stats: Stats) -> None:
    rng = random.Random()
    while True:
        sender, dest = rng.sample(wallets, 2)
        amount = rng.randint(1, 50) * RAO_PER_TAO // 10
        try:
            r = await client.transfer(sender, dest.ss58_address, amount)
            if r.status.success:
                stats.transfers_ok += 1
                stats.moved_rao += amount
            else:
                stats.transfers_failed += 1
        except Exception as exc:  # shown, never fatal: the demo keeps going
            stats.transfers_failed += 1
            say(f"  transfer refused: {exc}")
        await asyncio.sleep(rng.uniform(0.05, 0.4))


async def show_blocks(client: ChainClient, wallets: list[Keypair], stats: Stats,
                      demo: subnet_demo.Demo | None = None) -> None:
    names = dict(zip((k.ss58_address for k in wallets), DEMO_WALLETS, strict=True))
    async for block in client.blocks():
        stats.head = block.header.number
        if stats.first_head < 0:
            stats.first_head = block.header.number
        moves = [e for e in block.events if e.name == "Transfer"]
        line = f"block #{block.header.number:<6} {block.header.hash.hex()[:12]}  {len(block.extrinsics):>3} extrinsics"
        for e in moves[:3]:
            a = e.attributes
            line += (f" | {names.get(a['from'], a['from'][:8])} -> {names.get(a['to'], a['to'][:8])}"
                     f" {format_tao(int(a['amount']))}")
        if demo is not None:
            line += subnet_demo.block_note(demo, block)
        say(line)
        if demo is not None:
            await subnet_demo.on_block(client, demo, block, say)
        if block.header.number % 20 == 0:
            await show_balances(client, wallets)


async def show_balances(client: ChainClient, wallets: list[Keypair]) -> None:
    info = await client.info()
    cells = []
    for name, kp in zip(DEMO_WALLETS, wallets, strict=True):
        cells.append(f"{name} {format_tao((await client.account(kp.ss58_address)).free)}")
    say(f"  balances: {' | '.join(cells)} | issuance {format_tao(info.total_issuance)}"
        f" | burned {format_tao(info.total_burned)}")


async def network(sup: Supervisor, run_seconds: float | None) -> int:
    say(f"agora: starting a local network in {RUN_DIR}/ (Redis data is kept between runs)")
    redis = RedisServer(data_dir=RUN_DIR / "redis", appendonly=True, port=int(os.environ.get("AGORA_REDIS_PORT", 0)))
    redis.start()
    say(f"  redis      127.0.0.1:{redis.port} (append-only file in {RUN_DIR}/redis)")
    try:
        sup.agora("chain", "chain", "start", "--dev", "--redis-url", redis.url, "--network", NETWORK,
                  "--min-tempo", str(subnet_demo.MIN_TEMPO),
                  "--port", str(CHAIN_PORT), "--metrics-port", str(METRICS_PORT),
                  "--block-time-ms", str(BLOCK_TIME_MS))
        async with ChainClient(f"127.0.0.1:{CHAIN_PORT}") as client:
            await wait_for_chain(client, sup)
            info = await client.info()
            say(f"  chain      127.0.0.1:{CHAIN_PORT} gRPC, metrics http://127.0.0.1:{METRICS_PORT}/metrics,"
                f" genesis {info.genesis_hash.hex()[:16]}..., head #{info.head_number}")
            wallets = ensure_wallets(RUN_DIR / "wallets")
            await fund(client, wallets)
            demo = await subnet_demo.setup(client, say)
            say("  try:       .venv/bin/agora chain info   |   .venv/bin/agora wallet balance --all "
                f"--wallet.path {RUN_DIR}/wallets")
            say(f"             .venv/bin/agora subnets metagraph --netuid {demo.netuid}   |   .venv/bin/agora "
                "subnets list")
            say("  Ctrl-C stops everything; RUN_SECONDS=N stops by itself.\n")
            stats = Stats()
            tasks = [asyncio.create_task(send_transfers(client, wallets, stats)),
                     asyncio.create_task(show_blocks(client, wallets, stats, demo)),
                     asyncio.create_task(subnet_demo.set_weights_every_tempo(client, demo, say))]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                deadline = time.monotonic() + run_seconds if run_seconds else None
                while not stop.is_set():
                    sup.check_alive()
                    for t in tasks:
                        if t.done() and t.exception():
                            raise t.exception()  # type: ignore[misc]
                    if deadline and time.monotonic() >= deadline:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await summary(client, wallets, stats)
            await subnet_demo.summary(client, demo, say)
    finally:
        sup.stop_all()
        redis.stop()
    return 0


async def summary(client: ChainClient, wallets: list[Keypair], stats: Stats) -> None:
    info = await client.info()
    say(f"\nsummary after {time.monotonic() - stats.started:.0f}s: head #{info.head_number} "
        f"({info.head_number - max(stats.first_head, 0) + 1} blocks seen), {stats.transfers_ok} transfers finalized,"
        f" {stats.transfers_failed} failed, {format_tao(stats.moved_rao)} TAO moved")
    await show_balances(client, wallets)


def main() -> int:
    seconds = os.environ.get("RUN_SECONDS", "").strip()
    sup = Supervisor(log_dir=RUN_DIR / "logs")
    try:
        return asyncio.run(network(sup, float(seconds) if seconds else None))
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"agora: {exc}", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
