"""`agora chain ...`: read the chain (info, blocks, one block) and run a chain node.

Block listings print one line per block for people and one JSON object per line (JSON Lines)
with --json, so `--follow` streams the same way in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.chain.pool import BlockLimits, PoolLimits
from services.cli import output
from services.cli.output import CommandFailed
from services.cli.parsing import command_adder
from services.common.errors import InvalidRequest

DEFAULT_LIST_COUNT = 10
STOP_SECONDS = 10  # after the gRPC server's own grace period


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


_positive_int.__name__ = "positive integer"  # argparse names the type in its message


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    chain = groups.add_parser("chain", help="chain status, blocks, and running a node", allow_abbrev=False)
    command = command_adder(chain, common)

    command("info", info, "network, genesis, head, issuance, fee, pool and block producer")

    p = command("blocks", blocks, "one line per block: number, hash, time, extrinsics, events")
    p.add_argument("--from", dest="from_number", type=int, metavar="N",
                   help="first block (default: the last --count blocks, or the next one with --follow)")
    p.add_argument("--count", type=_positive_int, metavar="K",
                   help=f"how many blocks (default {DEFAULT_LIST_COUNT}; unlimited with --follow)")
    p.add_argument("--follow", action="store_true", help="keep printing new blocks until Ctrl-C")

    p = command("block", block, "one block with its extrinsics and events (default: the head)")
    at = p.add_mutually_exclusive_group()
    at.add_argument("--number", type=int, metavar="N")
    at.add_argument("--hash", metavar="HEX")

    p = command("start", start, "run a chain node until SIGTERM or Ctrl-C (logs on stderr)")
    env = os.environ.get
    p.add_argument("--redis-url", default=env("AGORA_REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="env AGORA_REDIS_URL")
    p.add_argument("--network", default=env("AGORA_NETWORK", "local"), help="env AGORA_NETWORK")
    p.add_argument("--host", default=env("AGORA_CHAIN_HOST", "127.0.0.1"),
                   help="address to listen on; 0.0.0.0 for all (env AGORA_CHAIN_HOST)")
    p.add_argument("--port", type=int, default=env("AGORA_CHAIN_PORT", "50051"),
                   help="gRPC; env AGORA_CHAIN_PORT")
    p.add_argument("--metrics-port", type=int, default=env("AGORA_METRICS_PORT", "9100"),
                   help="Prometheus; env AGORA_METRICS_PORT")
    p.add_argument("--block-time-ms", type=_positive_int, default=env("AGORA_BLOCK_TIME_MS", "12000"),
                   help="env AGORA_BLOCK_TIME_MS")
    p.add_argument("--dev", action="store_true", default=_env_flag("AGORA_DEV"),
                   help="fund the dev accounts (Alice, Bob, ...) at genesis (env AGORA_DEV=1)")
    p.add_argument("--genesis", type=Path, default=env("AGORA_GENESIS"), metavar="FILE",
                   help='JSON {"balances": {"<ss58>": <rao>}, "economics": {"min_tempo": 10, ...}} '
                        "for a new chain (env AGORA_GENESIS)")
    p.add_argument("--min-tempo", type=_positive_int, default=env("AGORA_MIN_TEMPO"), metavar="N",
                   help="lowest tempo a subnet owner may set, for a new chain (default 360; a dev network "
                        "might use 10 to run epochs every few seconds; env AGORA_MIN_TEMPO)")
    limits = p.add_argument_group("pool and block limits (services/chain/pool.py)")
    pool_defaults, block_defaults = PoolLimits(), BlockLimits()
    for flag, default, what in (
        ("--pool-capacity", pool_defaults.capacity, "extrinsics waiting at most, all signers"),
        ("--pool-bytes", pool_defaults.max_bytes, "bytes of extrinsics waiting at most"),
        ("--pool-per-signer", pool_defaults.per_signer, "extrinsics one signer may have waiting"),
        ("--max-block-extrinsics", block_defaults.max_extrinsics, "extrinsics per block"),
        ("--max-block-bytes", block_defaults.max_bytes,
         "bytes per block, events allowance included (at most the default, so GetBlock fits gRPC's 4 MiB message)"),
    ):
        name = "AGORA_" + flag[2:].upper().replace("-", "_")
        limits.add_argument(flag, type=_positive_int, default=env(name, str(default)), metavar="N",
                            help=f"{what} (default {default}; env {name})")
    p.add_argument("--no-produce", action="store_true", default=_env_flag("AGORA_NO_PRODUCE"),
                   help="serve reads and submissions but never produce blocks (env AGORA_NO_PRODUCE=1); "
                        "a normal second replica needs no flag: it waits for the production lease")


# ---- what a block looks like ----

def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _time(timestamp_ms: int) -> str:
    if not timestamp_ms:  # genesis carries no time
        return f"{'-':<19}"
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def call_dict(call) -> dict:
    from google.protobuf import json_format

    name = call.WhichOneof("call")
    if name == "transfer":
        return {"name": "transfer", "dest": call.transfer.dest, "amount_rao": call.transfer.amount}
    if name is None:
        return {"name": "unknown"}
    return {"name": name, **json_format.MessageToDict(getattr(call, name), preserving_proto_field_name=True)}


def block_dict(blk) -> dict:
    from agora.chain.v1 import chain_pb2
    from services.chain.codec import extrinsic_hash

    h = blk.header
    extrinsics = []
    for i, xt in enumerate(blk.extrinsics):
        payload = chain_pb2.ExtrinsicPayload.FromString(xt.payload)
        extrinsics.append({"index": i, "hash": _hex(extrinsic_hash(xt.payload, xt.signature)),
                           "signer": payload.signer, "nonce": payload.nonce, "call": call_dict(payload.call)})
    events = [{"extrinsic_index": e.extrinsic_index if e.HasField("extrinsic_index") else None,
               "name": e.name, "attributes": dict(sorted(e.attributes.items()))} for e in blk.events]
    return {"number": h.number, "hash": _hex(h.hash), "parent_hash": _hex(h.parent_hash),
            "timestamp_ms": h.timestamp_ms, "extrinsics_root": _hex(h.extrinsics_root),
            "events_root": _hex(h.events_root), "extrinsics": extrinsics, "events": events}


def events_summary(blk) -> str:
    counts = Counter(e.name for e in blk.events)  # keeps first-seen order
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items()) or "-"


def _print_block_line(args: argparse.Namespace, blk) -> None:
    if args.json:
        output.print_json_line(block_dict(blk))
        return
    h = blk.header
    print(f"{h.number:>8}  {h.hash.hex()[:16]}  {_time(h.timestamp_ms)}  {len(blk.extrinsics):>5}  "
          f"{events_summary(blk)}", flush=True)


BLOCK_LINE_HEADER = f"{'NUMBER':>8}  {'HASH':<16}  {'TIME (UTC)':<19}  {'XT':>5}  EVENTS"


def _describe_call(call: dict) -> str:
    if call["name"] == "transfer":
        return f"transfer {output.tao(call['amount_rao'])} TAO to {call['dest']}"
    return " ".join([call["name"], *(f"{k}={v}" for k, v in call.items() if k != "name")])


# ---- commands ----

def info(args: argparse.Namespace) -> int:
    i = asyncio.run(_with_client(args.chain, lambda c: c.info()))
    data = {"network": i.network, "genesis_hash": _hex(i.genesis_hash), "head_number": i.head_number,
            "head_hash": _hex(i.head_hash), "block_time_ms": i.block_time_ms,
            "total_issuance_rao": i.total_issuance, "total_burned_rao": i.total_burned,
            "transfer_fee_rao": i.transfer_fee, "pool_size": i.pool_size, "producer": i.producer,
            "ss58_format": i.ss58_format}
    if args.json:
        output.print_json(data)
        return 0
    output.print_fields([
        ("network", i.network), ("genesis hash", data["genesis_hash"]),
        ("head", f"#{i.head_number} {data['head_hash']}"), ("block time", f"{i.block_time_ms / 1000:g} s"),
        ("total issuance", f"{output.tao(i.total_issuance)} TAO"),
        ("burned", f"{output.tao(i.total_burned)} TAO"),
        ("transfer fee", f"{output.tao(i.transfer_fee)} TAO"),
        ("pool", f"{i.pool_size} extrinsics waiting"),
        ("producer", i.producer or "none (no node holds the production lease)"),
        ("ss58 format", i.ss58_format),
    ])
    return 0


def blocks(args: argparse.Namespace) -> int:
    if args.from_number is not None and args.from_number < 0:
        raise InvalidRequest(f"--from {args.from_number}: block numbers start at 0")
    try:
        asyncio.run(_blocks(args))
    except KeyboardInterrupt:  # the way to end --follow
        return 0 if args.follow else 130
    return 0


async def _blocks(args: argparse.Namespace) -> None:
    from services.chain.client import ChainClient

    async with ChainClient(args.chain) as client:
        head = (await client.info()).head_number
        if not args.json:
            print(BLOCK_LINE_HEADER, flush=True)
        if args.follow:
            start = head + 1 if args.from_number is None else args.from_number
            limit = args.count
        else:
            count = args.count or DEFAULT_LIST_COUNT
            start = max(0, head - count + 1) if args.from_number is None else args.from_number
            limit = max(0, min(count, head - start + 1))
        shown = 0
        if start == 0 and (limit is None or shown < limit):
            # SubscribeBlocks reads from_number 0 as "the next new block": fetch genesis by number
            _print_block_line(args, await client.block(0))
            shown, start = 1, 1
        if not args.follow:
            for number in range(start, start + limit - shown):
                _print_block_line(args, await client.block(number))
            return
        if limit is not None and shown >= limit:
            return
        async for blk in client.blocks(start):
            _print_block_line(args, blk)
            shown += 1
            if limit is not None and shown >= limit:
                return


def block(args: argparse.Namespace) -> int:
    block_hash = None
    if args.hash is not None:
        text = args.hash.removeprefix("0x")
        try:
            block_hash = bytes.fromhex(text)
        except ValueError:
            raise InvalidRequest(f"--hash {args.hash!r} is not hex") from None
    blk = asyncio.run(_with_client(args.chain, lambda c: c.block(args.number, block_hash)))
    data = block_dict(blk)
    if args.json:
        output.print_json(data)
        return 0
    output.print_fields([("block", f"#{data['number']}"), ("hash", data["hash"]),
                         ("parent", data["parent_hash"]), ("time", f"{_time(data['timestamp_ms'])} UTC"),
                         ("extrinsics", len(data["extrinsics"])), ("events", len(data["events"]))])
    if data["extrinsics"]:
        print()
        output.print_table(
            ["#", "HASH", "SIGNER", "NONCE", "CALL"],
            [[x["index"], x["hash"][:18], x["signer"], x["nonce"], _describe_call(x["call"])]
             for x in data["extrinsics"]],
            right=(0, 3),
        )
    if data["events"]:
        print()
        output.print_table(
            ["XT", "EVENT", "ATTRIBUTES"],
            [["-" if e["extrinsic_index"] is None else e["extrinsic_index"], e["name"],
              " ".join(f"{k}={v}" for k, v in e["attributes"].items())] for e in data["events"]],
            right=(0,),
        )
    return 0


async def _with_client(target: str, call):
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        return await call(client)


# ---- running a node ----

def mask_url(url: str) -> str:
    """A Redis URL fit for logs and errors: the password becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def start(args: argparse.Namespace) -> int:
    from services.chain.settings import ChainSettings, dev_balances, load_genesis_economics, load_genesis_file
    from services.chain.subnets import NetworkParams

    balances = dev_balances() if args.dev else {}
    economics = NetworkParams()
    if args.genesis is not None:
        balances |= load_genesis_file(args.genesis)
        economics = load_genesis_economics(args.genesis)
    if args.min_tempo is not None:  # the flag wins over the file
        economics = dataclasses.replace(economics, min_tempo=int(args.min_tempo))
    settings = ChainSettings(
        redis_url=args.redis_url, network=args.network, host=args.host, port=args.port,
        metrics_port=args.metrics_port, block_time_ms=args.block_time_ms, genesis_balances=balances,
        produce=not args.no_produce, economics=economics,
        pool=PoolLimits(capacity=int(args.pool_capacity), max_bytes=int(args.pool_bytes),
                        per_signer=int(args.pool_per_signer)),
        block=BlockLimits(max_extrinsics=int(args.max_block_extrinsics), max_bytes=int(args.max_block_bytes)),
    )
    logging.basicConfig(level=os.environ.get("AGORA_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("agora.cli")
    log.info("network %s, redis %s, block time %d ms, min tempo %d (for a new chain), %s", settings.network,
             mask_url(settings.redis_url), settings.block_time_ms, settings.economics.min_tempo,
             "producing when it holds the lease" if settings.produce else "never producing")
    if not balances:
        log.warning("no genesis balances (pass --dev or --genesis): a new chain starts with no funds")
    try:
        asyncio.run(_run_node(settings))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return 0


async def _run_node(settings) -> None:
    import redis.exceptions

    from services.chain.main import ChainNode

    node = ChainNode(settings)
    try:
        await node.start()
    except (redis.exceptions.ConnectionError, OSError, RuntimeError) as exc:  # Redis down, a port taken
        with contextlib.suppress(Exception):
            await _stop(node)  # release whatever start() had opened
        if isinstance(exc, redis.exceptions.ConnectionError):
            where = mask_url(settings.redis_url)
            raise CommandFailed("UNAVAILABLE", f"cannot reach Redis at {where}: {exc}") from None
        raise CommandFailed("UNAVAILABLE", f"cannot start the chain node: {exc}") from None
    try:
        await node.server.wait_for_termination()  # SIGTERM/SIGINT: health NOT_SERVING, then a graceful stop
    finally:
        await _stop(node)


async def _stop(node) -> None:
    """node.stop(), bounded: if a background task ignores its cancellation (the block producer
    sometimes keeps producing after one), exit anyway rather than hang after SIGTERM. asyncio.run
    would wait for that task too, so the process ends here."""
    stopping = asyncio.ensure_future(node.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_SECONDS)
    if stopping in done:
        stopping.result()
        return
    current = asyncio.current_task()
    stuck = sorted(t.get_name() for t in asyncio.all_tasks() if t is not current and t is not stopping)
    logging.getLogger("agora.cli").error("the chain node did not stop within %d s (still running: %s); exiting",
                                         STOP_SECONDS, ", ".join(stuck))
    logging.shutdown()
    os._exit(1)
