"""Validator figures, each beside the baseline it is compared with, measured in the same run.

- validator.round_fanout_ratio: one scoring round over 64 toy miner servers (a real chain's
  metagraph, signed requests, signature checks, scoring, the EMA) divided by the slowest of the
  same 64 miners asked alone, one after another, with the same challenge. 1.0 would be a round
  that costs nothing beyond its slowest miner; the goal is <= 1.3. The miners are echo toys that
  hold each NextWord batch (8 prefixes) for MINER_DELAY_S, a small model's compute time, and run in
  one child process, so their work does not share the validator's event loop (their 64 signature
  checks and signatures do share one core there, which real miners on their own machines would not).
  validator.round_overhead_ms is the same difference in milliseconds; validator.round_cpu_ms the
  CPU this process (validator and chain node) spent on a round.
- validator.query_overhead_ms: a user's Query (free: no payment) end to end through the
  validator's gRPC server to a miner that answers Generate at once, minus the answering miner's own
  round trip as the validator timed it:
  what routing, signing, checking and the extra hop add. Goal < 5 ms. Median of QUERIES.
- validator.paid_query_settle_ms: what paying adds: the payment's checks, its submission and the
  wait for its block (about half a block time on average; block time BLOCK_TIME_MS here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from grpc import aio

from agora.validator.v1 import validator_pb2, validator_pb2_grpc
from services.chain import client as calls
from services.common import keys
from services.common.redis_server import free_port, temporary_redis

MINERS = 64
MINER_DELAY_S = 0.5
ROUNDS = 5
QUERIES = 200
PAID_QUERIES = 20
BLOCK_TIME_MS = 200
TAO = 10**9
VALIDATOR = "bench-validator-hotkey"


def _miner_key(i: int):
    return keys.dev_keypair(f"bench-miner-{i}")


# ---- the child process: MINERS toy miners on one event loop ----

async def _serve_miners(count: int, delay_s: float, validator: str) -> None:
    from services.miner import toys
    from services.miner.main import Miner, MinerSettings

    class Delayed(toys.Echo):
        def next_words(self, prefixes, top_k):
            time.sleep(delay_s)
            return super().next_words(prefixes, top_k)

    miners = []
    for i in range(count):
        miner = Miner(MinerSettings(netuid=1, task="next-token", model="echo", host="127.0.0.1", port=0,
                                    metrics_port=None, warm_up=False, queue_limit=256),
                      hotkey=_miner_key(i), stake_of={validator: TAO}.get, loader=Delayed)
        await miner.start()
        miners.append(miner)
    for miner in miners:
        await miner.ready()
    print(json.dumps([m.port for m in miners]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)   # until the parent closes stdin
    for miner in miners:
        await miner.stop()


# ---- the parent ----

async def _network(chain_target: str, ports: list[int]) -> int:
    """A next-token subnet with a staked validator and the miners registered and served."""
    from services.chain.client import ChainClient

    alice, bob = keys.dev_keypair("Alice"), keys.dev_keypair("Bob")
    validator = keys.dev_keypair(VALIDATOR)
    async with ChainClient(chain_target) as client:
        owner = keys.dev_keypair("bench-owner").ss58_address
        r = await client.call(alice, calls.register_network_call("next-token", "bench", owner))
        assert r.status.success, r.status.error
        netuid = max(s.netuid for s in await client.subnets())
        for name, value in {"target_regs_per_interval": 200, "weights_rate_limit": 0}.items():
            await client.call(alice, calls.set_hyperparameter_call(netuid, name, value), wait=False)
        for key in (validator, *(_miner_key(i) for i in range(len(ports)))):
            await client.call(bob, calls.burned_register_call(netuid, key.ss58_address), wait=False)
        await client.call(alice, calls.transfer_call(bob.ss58_address, 1), wait=True)   # one block after them
        await client.call(bob, calls.add_stake_call(validator.ss58_address, 1_000 * TAO), wait=False)
        hashes = [(await client.call(_miner_key(i), calls.serve_axon_call(netuid, "127.0.0.1", port), wait=False)).hash
                  for i, port in enumerate(ports)]
        await client.call(alice, calls.transfer_call(bob.ss58_address, 1), wait=True)
        for h in hashes:
            status = await client.status(h)
            assert status.success, status.error
    return netuid


async def _fanout(validator) -> dict[str, float]:
    from services.validator.challenges import make_challenge
    from services.validator.sampling import round_rng

    loop = validator.loop
    await loop.run_round()   # channels open, miners warm
    rounds, cpu = [], []
    for _ in range(ROUNDS):
        cpu_started = time.process_time()
        rounds.append((await loop.run_round()).seconds)
        cpu.append(time.process_time() - cpu_started)
    # the same kind of challenge, each miner alone
    challenge = make_challenge(loop.data, round_rng(1, 10_000, loop.data.task), items=loop.settings.round_items)
    alone = []
    for endpoint in loop.view.miners(loop.hotkey.ss58_address):
        client = loop.pool.client(endpoint)
        started = time.perf_counter()
        await challenge.ask(client, 30.0)
        alone.append(time.perf_counter() - started)
    slowest, round_s = max(alone), statistics.median(rounds)
    return {"validator.round_fanout_ratio": round(round_s / slowest, 3),
            "validator.round_overhead_ms": round((round_s - slowest) * 1000, 1),
            "validator.round_cpu_ms": round(statistics.median(cpu) * 1000, 1),
            "validator.round_seconds": round(round_s, 3), "validator.slowest_miner_seconds": round(slowest, 3),
            "validator.round_miners": float(len(alone))}


async def _queries(validator, chain_client, payee: str) -> dict[str, float]:
    request = validator_pb2.QueryRequest(generate=validator_pb2.GenerateInput(prompt="Once upon a time"))
    async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
        stub = validator_pb2_grpc.ValidatorStub(channel)
        for _ in range(10):
            await stub.Query(request)
        overheads = []
        for _ in range(QUERIES):
            started = time.perf_counter()
            reply = await stub.Query(request)
            overheads.append(time.perf_counter() - started - reply.miner_seconds)
        # paid: the same validator charging a fee (settling takes a block)
        validator.desk.cashier.fee_rao = 1_000
        charlie = keys.dev_keypair("Charlie")
        settle = []
        for _ in range(PAID_QUERIES):
            paid = validator_pb2.QueryRequest(payer=charlie.ss58_address, generate=request.generate)
            paid.payment.CopyFrom(await chain_client.sign(charlie, calls.transfer_call(payee, 1_000)))
            started = time.perf_counter()
            reply = await stub.Query(paid)
            settle.append(time.perf_counter() - started - reply.miner_seconds)
        validator.desk.cashier.fee_rao = 0
    return {"validator.query_overhead_ms": round(statistics.median(overheads) * 1000, 3),
            "validator.query_overhead_p90_ms": round(statistics.quantiles(overheads, n=10)[-1] * 1000, 3),
            "validator.paid_query_settle_ms": round(statistics.median(settle) * 1000, 1),
            "validator.block_time_ms": float(BLOCK_TIME_MS)}


async def run() -> dict[str, float]:
    from services.chain.client import ChainClient
    from services.chain.main import ChainNode
    from services.chain.settings import ChainSettings, dev_balances
    from services.chain.subnets import NetworkParams
    from services.validator.datasets import load_task_data
    from services.validator.main import Validator
    from services.validator.settings import ValidatorSettings

    validator_key = keys.dev_keypair(VALIDATOR)
    child = subprocess.Popen([sys.executable, "-m", "bench.validator_bench", "serve-miners", "--count", str(MINERS),
                              "--delay-s", str(MINER_DELAY_S), "--validator", validator_key.ss58_address],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    redis = temporary_redis().start()
    node = ChainNode(ChainSettings(redis_url=redis.url, network="bench-validator", port=free_port(), metrics_port=0,
                                   block_time_ms=BLOCK_TIME_MS, genesis_balances=dev_balances(),
                                   economics=NetworkParams(min_tempo=1)))
    validator = None
    try:
        await node.start()
        chain_target = f"127.0.0.1:{node.server.port}"
        line = await asyncio.to_thread(child.stdout.readline)   # type: ignore[union-attr]
        ports = json.loads(line)
        netuid = await _network(chain_target, ports)
        payee = keys.dev_keypair("bench-payee").ss58_address
        settings = ValidatorSettings(netuid=netuid, chain=chain_target, port=0, metrics_port=None, fee_rao=0,
                                     round_interval_s=3_600, timeout_s=30, round_items=16, serve_axon=False,
                                     seed=1, attempt_timeout_s=30, query_timeout_s=60)
        data = await asyncio.to_thread(load_task_data, "next-token")
        validator = Validator(settings, hotkey=validator_key, coldkey=payee, data=data)
        await validator.start()
        async with ChainClient(chain_target) as chain_client:
            out = await _fanout(validator)
            validator.desk.router.attempt_timeout_s = 30
            out |= await _queries(validator, chain_client, payee)
        return out
    finally:
        if validator is not None:
            await validator.stop()
        await node.stop()
        redis.stop()
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.validator_bench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve-miners", help="the child: toy miners on one event loop, ports on stdout")
    p.add_argument("--count", type=int, default=MINERS)
    p.add_argument("--delay-s", type=float, default=MINER_DELAY_S)
    p.add_argument("--validator", required=True)
    args = parser.parse_args()
    asyncio.run(_serve_miners(args.count, args.delay_s, args.validator))


if __name__ == "__main__":
    main()
