"""`make run`: a whole local network in one command.

Redis (append-only, data kept under .run/), the chain, a root subnet and three subnets (next-token,
translation, embedding; plan.py), a ladder of real miners on each with a noise miner last, two
validators per subnet, and a user paying for queries; then a live view (blocks, epochs, metagraphs,
who answered the user) until Ctrl-C, or for RUN_SECONDS seconds once everything serves, then a
summary of the final incentives (also written to .run/summary.json).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.chain.client import ChainClient
from services.common import keys
from services.common.redis_server import RedisServer
from services.common.units import RAO_PER_TAO, format_tao
from services.devnet import fleet, plan, subnets, user
from services.devnet.processes import Supervisor, port_or_free
from services.devnet.wallets import ensure_user_wallet, write_dev_wallet

RUN_DIR = Path(os.environ.get("AGORA_RUN_DIR", ".run"))
BLOCK_TIME_MS = 250
NETWORK = "localnet"
# dev-only password for the demo user's wallet this command creates; real coldkeys get the user's own
DEV_PASSWORD = "agora-dev-password"
HEARTBEAT_BLOCKS = 20       # a block line at least this often
TABLE_EVERY_EPOCHS = 4      # a subnet's metagraph table every this many of its epochs


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    serving_s: float = 0.0
    first_head: int = -1
    head: int = 0
    extrinsics: int = 0


def say(text: str) -> None:
    print(text, flush=True)


async def wait_for_chain(client: ChainClient, sup: Supervisor, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check_alive()
        with contextlib.suppress(Exception):
            if (await client.info()).producer:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the chain did not answer within {timeout:.0f}s; see {RUN_DIR}/logs/chain.log")


async def fund(client: ChainClient, address: str) -> None:
    if (await client.account(address)).free < 10 * RAO_PER_TAO:
        r = await client.transfer(keys.dev_keypair("Alice"), address, 1_000 * RAO_PER_TAO)
        say(f"  funded     the user {address[:10]}... with 1,000 TAO from //Alice in block {r.status.block_number}")


async def follow_blocks(client: ChainClient, live: list[subnets.LiveSubnet], run: Run) -> None:
    by_netuid = {s.netuid: s for s in live}
    quiet = 0
    async for block in client.blocks():
        run.head = block.header.number
        if run.first_head < 0:
            run.first_head = run.head
        run.extrinsics += len(block.extrinsics)
        epochs = [by_netuid[n] for n in subnets.epoch_netuids(block) if n in by_netuid]
        quiet += 1
        if not epochs and quiet < HEARTBEAT_BLOCKS:
            continue
        quiet = 0
        notes = [f"epoch of subnet {s.netuid} {s.plan.name!r}" for s in epochs]
        weights = sum(1 for e in block.events if e.name == "WeightsSet")
        if weights:
            notes.append(f"{weights} weights")
        say(f"block #{run.head:<6} {block.header.hash.hex()[:12]}  {len(block.extrinsics):>2} extrinsics"
            + (" | " + ", ".join(notes) if notes else ""))
        for sub in epochs:
            sub.epochs += 1
            if sub.epochs % TABLE_EVERY_EPOCHS == 1:
                await subnets.show_metagraph(client, sub, say)


async def network(sup: Supervisor, run_seconds: float | None) -> int:
    run = Run()
    say(f"agora: starting a local network in {RUN_DIR}/ (Redis data is kept between runs)")
    redis = RedisServer(data_dir=RUN_DIR / "redis", appendonly=True, port=int(os.environ.get("AGORA_REDIS_PORT", 0)))
    redis.start()
    say(f"  redis      127.0.0.1:{redis.port} (append-only file in {RUN_DIR}/redis)")
    chain_port, metrics_port = port_or_free(50051), port_or_free(9100)
    chain = f"127.0.0.1:{chain_port}"
    wallets = RUN_DIR / "wallets"
    try:
        sup.agora("chain", "chain", "start", "--dev", "--redis-url", redis.url, "--network", NETWORK,
                  "--min-tempo", str(plan.MIN_TEMPO), "--port", str(chain_port), "--metrics-port", str(metrics_port),
                  "--block-time-ms", str(BLOCK_TIME_MS))
        payer_task = asyncio.create_task(asyncio.to_thread(ensure_user_wallet, wallets, plan.USER_WALLET,
                                                           DEV_PASSWORD))
        async with ChainClient(chain) as client:
            await wait_for_chain(client, sup)
            info = await client.info()
            say(f"  chain      {chain} gRPC, metrics http://127.0.0.1:{metrics_port}/metrics, "
                f"genesis {info.genesis_hash.hex()[:16]}..., head #{info.head_number}")
            for coldkey in {m.coldkey for s in plan.SUBNETS for m in s.miners}:
                write_dev_wallet(wallets, coldkey, [m.hotkey for s in plan.SUBNETS for m in s.miners
                                                    if m.coldkey == coldkey])
            for v in plan.VALIDATORS:
                write_dev_wallet(wallets, v.coldkey, [v.hotkey])
            live = await subnets.setup(client, plan.SUBNETS, say)
            payer = await payer_task
            await fund(client, payer.ss58_address)
            await asyncio.to_thread(fleet.prepare_models, live)
            miners = fleet.start_miners(sup, live, chain, wallets)
            say(f"  starting   {len(miners)} miners (logs in {RUN_DIR}/logs/)")
            await fleet.wait_serving(sup, miners, "loading models")
            validators = fleet.start_validators(sup, live, chain, wallets, redis.url)
            await fleet.wait_serving(sup, validators, "starting validators")
            procs = miners + validators
            run.serving_s = time.monotonic() - run.started
            say(f"  serving after {run.serving_s:.0f}s:")
            for p in procs:
                say(f"    {p.kind:<9} {p.name:<20} subnet {p.netuid}  grpc {p.target}  "
                    f"metrics http://127.0.0.1:{p.metrics_port}/metrics")
            say(f"  try:       .venv/bin/agora subnets metagraph --netuid {live[0].netuid}   |   "
                f".venv/bin/agora validator scores --netuid {live[0].netuid}")
            say(f'             .venv/bin/agora query --netuid {live[0].netuid} --wallet.name {plan.USER_WALLET} '
                f'--wallet.path {wallets} "The capital of France is"   (password {DEV_PASSWORD})')
            say("  Ctrl-C stops everything" + (f"; stopping by itself in {run_seconds:.0f}s" if run_seconds else "")
                + ".\n")
            stats = user.UserStats()
            await live_view(client, sup, live, payer, run, stats, run_seconds)
            await summary(client, sup, live, run, stats)
    finally:
        sup.stop_all()
        redis.stop()
    return 0


async def live_view(client: ChainClient, sup: Supervisor, live: list[subnets.LiveSubnet], payer, run: Run,
                    stats: user.UserStats, run_seconds: float | None) -> None:
    tasks = [asyncio.create_task(follow_blocks(client, live, run)),
             asyncio.create_task(user.ask_forever(client, payer, live, stats, say)),
             asyncio.create_task(subnets.set_root_weights(client, live, BLOCK_TIME_MS / 1000, say))]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + run_seconds if run_seconds else None
    try:
        while not stop.is_set():
            sup.check_alive()
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception():
                    raise t.exception()  # type: ignore[misc]
            if deadline and time.monotonic() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def summary(client: ChainClient, sup: Supervisor, live: list[subnets.LiveSubnet], run: Run,
                  stats: user.UserStats) -> None:
    info = await client.info()
    peak = sup.peak_rss_bytes()
    say(f"\nsummary after {time.monotonic() - run.started:.0f}s (serving after {run.serving_s:.0f}s): "
        f"head #{info.head_number}, {run.extrinsics} extrinsics in {max(run.head - run.first_head + 1, 0)} blocks "
        f"seen, issuance {format_tao(info.total_issuance)} TAO")
    first_s = stats.first_answer_at - run.started if stats.first_answer_at is not None else None
    first = f"{first_s:.0f}s after start" if first_s is not None else "none"
    say(f"  user: {stats.answered} paid queries answered ({stats.failed} not), {format_tao(stats.paid_rao)} TAO "
        f"paid; first answered {first}")
    for who, n in sorted(stats.by_miner.items(), key=lambda kv: -kv[1]):
        say(f"    {n:>3} answered by {who}")
    say(f"  peak memory of the network's processes: {peak / 2**30:.1f} GiB")
    say("  final incentives (the ladder is best first; emission should follow it):")
    results = [await subnets.final_incentives(client, sub) for sub in live]
    for r in results:
        subnets.show_final(r, say)
    (RUN_DIR / "summary.json").write_text(json.dumps({
        "seconds": round(time.monotonic() - run.started, 1), "serving_after_s": round(run.serving_s, 1),
        "head": info.head_number, "queries_answered": stats.answered, "queries_failed": stats.failed,
        "first_answer_after_s": round(first_s, 1) if first_s is not None else None,
        "answers_by_miner": stats.by_miner, "peak_rss_bytes": peak, "subnets": results,
    }, indent=2) + "\n")


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
