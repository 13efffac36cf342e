"""`agora miner ...`: run a miner on a subnet, and check one with a signed Info call.

    agora miner start --netuid 1 --wallet.name W --wallet.hotkey H --model smollm2-135m
    agora miner info --endpoint 10.0.0.5:8091 --wallet.name W --wallet.hotkey H

`start` takes its task from the subnet, refuses to run on a hotkey that is not registered there
(and prints the command that registers it), publishes its endpoint with serve_axon and serves
until SIGTERM or Ctrl-C. Flags follow btcli's where it has them (--axon.port, --axon.ip,
--axon.external_ip, --axon.external_port); progress bars of model conversion and loading and the
logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys

from services.cli import output
from services.cli.output import CommandFailed
from services.cli.parsing import command_adder
from services.cli.wallet_cmds import _check_name, _option, _wallet_path_option

MODEL_ALIASES = ("smollm2-135m", "gemma3-270m", "minilm-l6", "mpnet-base", "echo", "noise")
TASKS = ("next-token", "translation", "embedding")
STOP_SECONDS = 15   # after the gRPC server's own grace period


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value < 65536:
        raise ValueError(text)
    return value


_port.__name__ = "port"


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_nonnegative_int.__name__ = "non-negative integer"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


_positive_int.__name__ = "positive integer"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10:
        raise ValueError(text)
    return value


_fraction.__name__ = "fraction 0..10"


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    miner = groups.add_parser("miner", help="run a miner, check one", allow_abbrev=False)
    command = command_adder(miner, common)

    p = command("start", start, "serve a model on a subnet until SIGTERM or Ctrl-C (logs on stderr)")
    p.add_argument("--netuid", type=_nonnegative_int, required=True, metavar="N")
    _option(p, "wallet.name", required=True, metavar="NAME")
    _option(p, "wallet.hotkey", default="default", metavar="NAME")
    _wallet_path_option(p)
    p.add_argument("--model", required=True, metavar="ID_OR_PATH",
                   help=f"an alias ({', '.join(MODEL_ALIASES)}), a Hugging Face hub id or a local folder or .gguf")
    p.add_argument("--gguf-file", metavar="NAME", help="a GGUF file inside --model, converted once")
    p.add_argument("--host", "--axon.ip", "--axon-ip", dest="host", default=_env("AGORA_MINER_HOST", "0.0.0.0"),
                   help="address to listen on (env AGORA_MINER_HOST, default 0.0.0.0)")
    p.add_argument("--port", "--axon.port", "--axon-port", dest="port", type=_port,
                   default=_env("AGORA_MINER_PORT", "8091"), help="gRPC (env AGORA_MINER_PORT, default 8091)")
    p.add_argument("--axon.external_ip", "--axon.external-ip", "--axon-external-ip", dest="axon_host",
                   default=_env("AGORA_AXON_HOST"), metavar="HOST",
                   help="host published on the chain (env AGORA_AXON_HOST; default: the listening address, "
                        "or with 0.0.0.0 this machine's address towards the chain)")
    p.add_argument("--axon.external_port", "--axon.external-port", "--axon-external-port", dest="axon_port",
                   type=_port, default=_env("AGORA_AXON_PORT"), metavar="PORT",
                   help="port published on the chain (env AGORA_AXON_PORT; default --port)")
    p.add_argument("--metrics-port", type=_port, default=_env("AGORA_METRICS_PORT", "9101"),
                   help="Prometheus (env AGORA_METRICS_PORT, default 9101)")
    p.add_argument("--threads", type=_nonnegative_int, default=0, help="torch threads; 0 = one per core")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--max-batch", type=_positive_int, default=8, help="rows per model call (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="how long a batch waits to fill (default 10)")
    p.add_argument("--queue-limit", type=_positive_int, default=64,
                   help="waiting requests before RESOURCE_EXHAUSTED (default 64)")
    p.add_argument("--queue-rows", type=_positive_int, default=256,
                   help="waiting rows (prefixes, sentences, texts) before RESOURCE_EXHAUSTED (default 256)")
    p.add_argument("--no-pack", dest="pack_weights", action="store_false",
                   help="keep torch's default matmul instead of oneDNN-packed linear layers")
    p.add_argument("--degrade", type=_fraction, default=0.0,
                   help="weight noise as a fraction of each tensor's std (a weaker model, for tests and demos)")
    p.add_argument("--seed", type=int, default=0, help="seeds --degrade and the noise model")
    p.add_argument("--refresh-blocks", type=_positive_int, default=10, metavar="N",
                   help="read the metagraph at least every N blocks (default 10; also on registrations, "
                        "stake changes and epochs)")
    p.add_argument("--offline", action="store_true",
                   help="no chain: no registration check, no serve_axon, every signed caller is served")
    p.add_argument("--task", choices=TASKS, help="with --offline only (on a chain the subnet decides)")

    p = command("info", info, "call a miner's Info, signed by your hotkey (is it up, what does it serve?)")
    p.add_argument("--endpoint", required=True, metavar="HOST:PORT")
    _option(p, "wallet.name", required=True, metavar="NAME")
    _option(p, "wallet.hotkey", default="default", metavar="NAME")
    _wallet_path_option(p)
    p.add_argument("--miner-hotkey", metavar="SS58",
                   help="the miner's hotkey (default: found on the chain by its published endpoint)")
    p.add_argument("--netuid", type=_nonnegative_int, metavar="N", help="look for the endpoint on this subnet only")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

    p = command("sign-request", sign_request, "print a signed request as JSON, for grpcurl -d (a generic gRPC client)")
    p.add_argument("--method", required=True, choices=("Info", "NextWord", "Generate", "Translate", "Embed"))
    p.add_argument("--miner-hotkey", required=True, metavar="SS58", help="the miner's hotkey (it checks the signature)")
    p.add_argument("--body", default="{}", metavar="JSON",
                   help='the request without auth, e.g. \'{"prefixes": ["Hi"]}\'')
    _option(p, "wallet.name", metavar="NAME", help="the calling validator's wallet (or --dev NAME)")
    _option(p, "wallet.hotkey", default="default", metavar="NAME")
    _wallet_path_option(p)
    p.add_argument("--dev", metavar="NAME", help="sign with the dev hotkey //NAME//HOTKEY (--wallet.hotkey)")


# ---- start ----

def start(args: argparse.Namespace) -> int:
    from services.miner.settings import MinerSettings

    if args.task and not args.offline:
        raise CommandFailed("INVALID_ARGUMENT", "--task is for --offline only: on a chain a miner serves its "
                                                "subnet's task")
    settings = MinerSettings(
        netuid=args.netuid, task=args.task or "next-token", chain=None if args.offline else args.chain,
        wallet_name=_check_name(args.wallet_name, "wallet name"),
        wallet_hotkey=_check_name(args.wallet_hotkey, "hotkey name"), wallet_path=args.wallet_path,
        model=args.model, gguf_file=args.gguf_file, dtype=args.dtype, threads=args.threads,
        degrade=args.degrade, seed=args.seed, host=args.host, port=args.port, axon_host=args.axon_host,
        axon_port=args.axon_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, queue_limit=args.queue_limit, queue_rows=args.queue_rows,
        pack_weights=args.pack_weights, metagraph_refresh_blocks=args.refresh_blocks,
    )
    logging.basicConfig(level=os.environ.get("AGORA_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run(settings))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return 0


async def _run(settings) -> None:
    from services.miner.main import Miner

    miner = await Miner.connect(settings) if settings.chain else Miner(settings)
    try:
        await miner.start()
    except OSError as exc:  # the port is taken
        await _stop(miner)
        raise CommandFailed("UNAVAILABLE", f"cannot start the miner: {exc}") from None
    except BaseException:
        await _stop(miner)
        raise
    try:
        await miner.serve_until_signalled()
    finally:
        await _stop(miner)


async def _stop(miner) -> None:
    """miner.stop(), bounded: a model call stuck on the compute thread must not hold up the exit."""
    stopping = asyncio.ensure_future(miner.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_SECONDS)
    if stopping in done:
        stopping.result()
        return
    logging.getLogger("agora.cli").error("the miner did not stop within %d s; exiting", STOP_SECONDS)
    logging.shutdown()
    os._exit(1)


# ---- info ----

def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 0 < number < 65536:
        raise CommandFailed("INVALID_ARGUMENT", f"--endpoint {endpoint!r} is not HOST:PORT")
    return host.strip("[]"), number


def _addresses(host: str) -> set[str]:
    with contextlib.suppress(OSError):
        return {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    return {host}


async def _find_miner(chain: str, host: str, port: int, netuid: int | None) -> tuple[str, int, int]:
    """(hotkey, netuid, uid) of the neuron whose published axon is host:port."""
    import grpc

    from services.chain.client import ChainClient

    wanted = _addresses(host)
    try:
        async with ChainClient(chain, timeout=10) as client:
            netuids = [netuid] if netuid is not None else [s.netuid for s in await client.subnets() if s.netuid]
            for n in netuids:
                for neuron in (await client.metagraph(n)).neurons:
                    axon = neuron.axon
                    if neuron.HasField("axon") and axon.port == port and (
                            axon.host == host or _addresses(axon.host) & wanted):
                        return neuron.hotkey, n, neuron.uid
    except grpc.aio.AioRpcError as exc:
        raise CommandFailed(exc.code().name, f"cannot look the miner up on the chain at {chain} ({exc.details()}); "
                                             "pass --miner-hotkey") from None
    where = f"subnet {netuid}" if netuid is not None else "any subnet"
    raise CommandFailed("NOT_FOUND", f"no neuron on {where} publishes {host}:{port}; pass --miner-hotkey")


def info(args: argparse.Namespace) -> int:
    from services.common import keys

    host, port = _split_endpoint(args.endpoint)
    if args.miner_hotkey:
        keys.check_address(args.miner_hotkey, what="--miner-hotkey")
    wallet = keys.wallet(_check_name(args.wallet_name, "wallet name"),
                         _check_name(args.wallet_hotkey, "hotkey name"), args.wallet_path)
    keypair = keys.hotkey_keypair(wallet)
    found = None
    if args.miner_hotkey:
        miner_hotkey = args.miner_hotkey
    else:
        found = asyncio.run(_find_miner(args.chain, host, port, args.netuid))
        miner_hotkey = found[0]
    response = asyncio.run(_call_info(args.endpoint, keypair, miner_hotkey, args.timeout))
    data = {
        "endpoint": args.endpoint, "hotkey": response.hotkey, "netuid": response.netuid,
        "uid": found[2] if found else None, "task": _task_name(response.task), "model": response.model,
        "version": response.version, "ready": response.ready, "methods": list(response.methods),
        "max_request_items": response.max_request_items, "caller": keypair.ss58_address,
    }
    if response.max_top_k:
        data["max_top_k"] = response.max_top_k
    if response.max_tokens:
        data["max_tokens"] = response.max_tokens
    if response.target_languages:
        data["target_languages"] = list(response.target_languages)
    if response.embedding_dimensions:
        data["embedding_dimensions"] = response.embedding_dimensions
    if args.json:
        output.print_json(data)
        return 0
    output.print_fields([(k.replace("_", " "), _show(v)) for k, v in data.items() if v is not None])
    return 0


def sign_request(args: argparse.Namespace) -> int:
    """The request signed now (its timestamp is good for the miner's max age, 30 s by default)."""
    from google.protobuf import json_format

    from agora.miner.v1 import miner_pb2
    from services.cli.signing import dev_hotkey
    from services.common import keys
    from services.miner import auth

    keys.check_address(args.miner_hotkey, what="--miner-hotkey")
    if args.dev:
        keypair = dev_hotkey(args.dev, args.wallet_hotkey)
    elif args.wallet_name:
        keypair = keys.hotkey_keypair(keys.wallet(_check_name(args.wallet_name, "wallet name"),
                                                  _check_name(args.wallet_hotkey, "hotkey name"), args.wallet_path))
    else:
        raise CommandFailed("INVALID_ARGUMENT", "sign with --wallet.name W --wallet.hotkey H, or --dev NAME")
    request = getattr(miner_pb2, f"{args.method}Request")()
    try:
        json_format.Parse(args.body, request)
    except json_format.ParseError as exc:
        raise CommandFailed("INVALID_ARGUMENT", f"--body is not a {args.method}Request: {exc}") from None
    auth.sign_request(keypair, auth.method_path(args.method), request, args.miner_hotkey)
    print(json_format.MessageToJson(request, indent=None))
    return 0


def _show(value: object) -> object:
    if isinstance(value, bool):
        return "yes" if value else "no (the model is still loading)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def _task_name(task: int) -> str:
    from agora.miner.v1 import miner_pb2

    return miner_pb2.Task.Name(task).lower().replace("_", "-")


async def _call_info(endpoint: str, keypair, miner_hotkey: str, timeout: float):
    import grpc

    from services.miner.client import BadResponseSignature, MinerClient

    try:
        async with MinerClient(endpoint, keypair, miner_hotkey, timeout=timeout) as client:
            return await client.info()
    except BadResponseSignature:
        raise CommandFailed("UNAUTHENTICATED", f"the answer from {endpoint} is not signed by miner {miner_hotkey}: "
                                               "another process answers there") from None
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
        if code is grpc.StatusCode.PERMISSION_DENIED:
            details = (f"the miner at {endpoint} answers but refuses hotkey {keypair.ss58_address}: only validators "
                       f"holding a permit on its subnet (and the miner's own hotkey) may call it ({details})")
        elif code is grpc.StatusCode.UNAVAILABLE:
            details = f"no miner answers at {endpoint} ({details})"
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            details = f"the miner at {endpoint} did not answer within {timeout:g} s"
        elif code is grpc.StatusCode.UNAUTHENTICATED:
            details = f"the miner at {endpoint} refused the signature: {details}"
        raise CommandFailed(code.name, details) from None
