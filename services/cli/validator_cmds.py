"""`agora validator ...` (run a validator, read its scores) and `agora query` (a user's paid query).

A user needs no validator address: `agora query` reads the subnet's metagraph and picks the most
staked neuron serving a validator endpoint (validators publish theirs at start), unless --validator
names one. The query's fee is paid by a transfer the user signs here and the validator submits.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys

from services.cli import output
from services.cli.output import CommandFailed
from services.common import keys

PASSWORD_ENV = "AGORA_COLDKEY_PASSWORD"
WALLET_PATH_ENV = "AGORA_WALLET_PATH"
QUERY_TIMEOUT_S = 120.0


def _dotted(parser: argparse.ArgumentParser, dotted: str, **kwargs: object) -> None:
    """btcli's dotted flag (--wallet.name) and a dashed alias (--wallet-name), one dest (wallet_name)."""
    flags = [f"--{dotted}", f"--{dotted.replace('.', '-')}"]
    parser.add_argument(*flags, dest=dotted.replace(".", "_").replace("-", "_"), **kwargs)  # type: ignore[arg-type]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    env = os.environ.get
    validator = groups.add_parser("validator", help="run a validator, read its scores", allow_abbrev=False)
    commands = validator.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("start", parents=[common], allow_abbrev=False,
                            help="score a subnet's miners, set weights, serve paid queries (until SIGTERM)",
                            description="score a subnet's miners, set weights, serve paid queries (until SIGTERM)")
    p.set_defaults(func=start)
    p.add_argument("--netuid", type=int, required=True)
    _dotted(p, "wallet.name", required=True, help="the wallet whose hotkey validates and whose coldkey is paid")
    _dotted(p, "wallet.hotkey", default="default")
    _dotted(p, "wallet.path", default=env(WALLET_PATH_ENV), metavar="DIR", help=f"env {WALLET_PATH_ENV}")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="held-out data: offline (public, demo only), jsonl:PATH or hf:PATH[:CONFIG] (env AGORA_DATA)")
    p.add_argument("--host", default=None, help="listen address (env AGORA_VALIDATOR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="gRPC (env AGORA_VALIDATOR_PORT, default 8092)")
    p.add_argument("--external-host", default=None, help="the host published on the chain (default: --host)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus (env AGORA_METRICS_PORT, default 9102)")
    p.add_argument("--round-items", type=int, default=None, metavar="K", help="items per round (default 16)")
    p.add_argument("--timeout-s", type=float, default=None, metavar="T", help="a miner's deadline in a round")
    p.add_argument("--round-interval-s", type=float, default=None, help="least seconds between round starts")
    p.add_argument("--fee", default=None, metavar="TAO", help="what a query costs (default 0.001; 0: free)")
    p.add_argument("--redis-url", default=None, help="keep the moving average in Redis (env AGORA_REDIS_URL)")
    p.add_argument("--seed", type=int, default=None, help="the rounds' sampling seed (default: secret, per start)")

    p = commands.add_parser("scores", parents=[common], allow_abbrev=False,
                            help="a validator's view of its subnet's miners", description="one row per miner, "
                            "best moving average first: uid, hotkey, EMA, last score, answered/failed/timeouts")
    p.set_defaults(func=scores)
    p.add_argument("--netuid", type=int, required=True)
    p.add_argument("--validator", metavar="HOST:PORT", help="default: the subnet's most staked validator endpoint")

    p = groups.add_parser("query", parents=[common], allow_abbrev=False,
                          help="ask a subnet through a validator, paying its fee",
                          description="ask a subnet through a validator, paying its fee from a coldkey: a prompt "
                          "(next-token), sentences and --to (translation) or texts (embedding)")
    p.set_defaults(func=query)
    p.add_argument("--netuid", type=int, required=True)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="the prompt, or the sentences / texts")
    payer = p.add_mutually_exclusive_group(required=True)
    _dotted(payer, "wallet.name", help="pay from this wallet's coldkey (password: env AGORA_COLDKEY_PASSWORD or "
            "a prompt)")
    payer.add_argument("--dev", metavar="NAME", help="pay with the dev key //NAME (local networks only)")
    _dotted(p, "wallet.path", default=env(WALLET_PATH_ENV), metavar="DIR", help=f"env {WALLET_PATH_ENV}")
    p.add_argument("--validator", metavar="HOST:PORT", help="default: the subnet's most staked validator endpoint")
    p.add_argument("--to", dest="target_language", metavar="LANG", help="translate into fr, de or es")
    p.add_argument("--max-tokens", type=int, default=0, help="generate: new tokens at most (default 32)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--next-word", action="store_true",
                   help="next-token: the likeliest next words after each TEXT, with probabilities")
    p.add_argument("--top-k", type=int, default=0, help="--next-word: words per prefix (default 10)")
    p.add_argument("--ensemble", type=int, default=0, metavar="K",
                   help="--next-word: mix the distributions of the best K miners (the network's answer)")
    p.add_argument("--max-fee", default=None, metavar="TAO", help="refuse to pay a validator asking more")
    p.add_argument("--sign-only", action="store_true",
                   help="print the signed, paid request as JSON instead of sending it (for grpcurl -d)")


# ---- running ----

def start(args: argparse.Namespace) -> int:
    from services.common.units import parse_tao
    from services.validator.main import run_validator
    from services.validator.settings import ValidatorSettings

    settings = ValidatorSettings.from_env(
        netuid=args.netuid, wallet_name=args.wallet_name, wallet_hotkey=args.wallet_hotkey,
        wallet_path=args.wallet_path, chain=getattr(args, "chain", None), data=args.data, host=args.host,
        port=args.port, external_host=args.external_host, metrics_port=args.metrics_port,
        round_items=args.round_items, timeout_s=args.timeout_s, round_interval_s=args.round_interval_s,
        fee_rao=parse_tao(args.fee) if args.fee is not None else None, redis_url=args.redis_url, seed=args.seed,
    )
    logging.basicConfig(level=os.environ.get("AGORA_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("agora.cli").info("%r", settings)
    try:
        asyncio.run(run_validator(settings))
    except KeyboardInterrupt:
        return 130
    return 0


# ---- reading scores ----

async def _discover(chain: str, netuid: int) -> str:
    """The endpoint of the subnet's most staked validator, from the metagraph."""
    from services.chain.client import ChainClient
    from services.validator.client import discover

    async with ChainClient(chain) as client:
        return await discover(client, netuid)


async def _call(target: str, method: str, request):
    from grpc import aio

    from services.validator.client import call

    try:
        return await call(target, method, request, QUERY_TIMEOUT_S)
    except aio.AioRpcError as exc:
        raise CommandFailed(exc.code().name, f"validator {target}: {exc.details()}") from None


def scores(args: argparse.Namespace) -> int:
    from agora.validator.v1 import validator_pb2

    async def run():
        target = args.validator or await _discover(args.chain, args.netuid)
        return target, await _call(target, "Scores", validator_pb2.ScoresRequest(netuid=args.netuid))

    target, reply = asyncio.run(run())
    rows = [{"uid": r.uid, "hotkey": r.hotkey, "ema": r.ema, "last_score": r.last_score,
             "last_metric": r.last_metric, "answered": r.answered, "failed": r.failed, "timeouts": r.timeouts,
             "weight": r.weight, "endpoint": r.endpoint} for r in reply.miners]
    if args.json:
        output.print_json({"validator": target, "netuid": reply.netuid, "metric": reply.metric,
                           "rounds": reply.rounds, "block": reply.block,
                           "last_weights_block": reply.last_weights_block, "miners": rows})
        return 0
    output.print_fields([("validator", target), ("subnet", f"{reply.netuid} ({reply.metric})"),
                         ("rounds", reply.rounds), ("last weights", reply.last_weights_block or "none yet")])
    print()
    output.print_table(
        ["UID", "HOTKEY", "EMA", "LAST SCORE", "METRIC", "ANSWERED", "FAILED", "TIMEOUTS", "WEIGHT"],
        [[r.uid, r.hotkey, f"{r.ema:.4f}", f"{r.last_score:.4f}", f"{r.last_metric:.3f}", r.answered, r.failed,
          r.timeouts, r.weight] for r in reply.miners],
        right=(0, 2, 3, 4, 5, 6, 7, 8),
    )
    return 0


# ---- a user's query ----

def _payer(args: argparse.Namespace):
    if args.dev:
        for name in keys.DEV_ACCOUNTS:
            if name.lower() == args.dev.lower():
                return keys.dev_keypair(name)
        raise CommandFailed("INVALID_ARGUMENT", f"no dev account {args.dev!r}: one of {', '.join(keys.DEV_ACCOUNTS)}")
    w = keys.wallet(args.wallet_name, path=args.wallet_path)
    password = None
    if w.coldkey_file.exists_on_device() and w.coldkey_file.is_encrypted():
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"password for the coldkey of wallet {w.name!r}: ")
    return keys.unlock_coldkey(w, password)


def _request(args: argparse.Namespace, info):
    from agora.validator.v1 import validator_pb2

    methods = list(info.methods)
    if args.ensemble and not args.next_word:
        raise CommandFailed("INVALID_ARGUMENT", "--ensemble mixes next-word distributions: add --next-word")
    if args.next_word:
        if "next_word" not in methods:
            raise CommandFailed("INVALID_ARGUMENT", f"subnet {args.netuid} does not predict words (it takes "
                                f"{', '.join(methods)})")
        return validator_pb2.QueryRequest(netuid=args.netuid, ensemble=args.ensemble,
                                          next_word=validator_pb2.NextWordInput(prefixes=args.texts, top_k=args.top_k))
    if "embed" in methods:
        return validator_pb2.QueryRequest(netuid=args.netuid, embed=validator_pb2.EmbedInput(texts=args.texts))
    if args.target_language:
        if "translate" not in methods:
            raise CommandFailed("INVALID_ARGUMENT", f"subnet {args.netuid} does not translate (it takes "
                                f"{', '.join(methods)})")
        return validator_pb2.QueryRequest(netuid=args.netuid, translate=validator_pb2.TranslateInput(
            sentences=args.texts, target_language=args.target_language))
    if len(args.texts) != 1:
        raise CommandFailed("INVALID_ARGUMENT", "give one prompt (quote it), or --to LANG to translate sentences")
    return validator_pb2.QueryRequest(netuid=args.netuid, generate=validator_pb2.GenerateInput(
        prompt=args.texts[0], max_tokens=args.max_tokens, temperature=args.temperature))


def query(args: argparse.Namespace) -> int:
    from agora.validator.v1 import validator_pb2
    from services.common.units import parse_tao

    max_fee = parse_tao(args.max_fee) if args.max_fee is not None else None
    keypair = _payer(args)   # before any network call: a wrong password fails fast

    async def run():
        from grpc import aio

        from services.chain.client import ChainClient
        from services.validator.client import paid_query, with_payment

        target = args.validator or await _discover(args.chain, args.netuid)
        info = await _call(target, "Info", validator_pb2.InfoRequest())
        if max_fee is not None and info.fee_rao > max_fee:
            raise CommandFailed("FAILED_PRECONDITION", f"{target} asks {output.tao(info.fee_rao)} TAO per query, "
                                f"above --max-fee {output.tao(max_fee)}")
        request = _request(args, info)
        async with ChainClient(args.chain) as chain:
            if args.sign_only:
                return target, await with_payment(chain, target, info, keypair, request)
            try:
                return target, await paid_query(chain, target, keypair, request, info=info, timeout=QUERY_TIMEOUT_S)
            except aio.AioRpcError as exc:
                raise CommandFailed(exc.code().name, f"validator {target}: {exc.details()}") from None

    target, reply = asyncio.run(run())
    if args.sign_only:   # the paid request, for a generic client: grpcurl -d "$(agora query ... --sign-only)"
        from google.protobuf import json_format

        print(json_format.MessageToJson(reply, indent=None))
        return 0
    kind = reply.WhichOneof("output")
    result = {"validator": target, "uid": reply.uid, "hotkey": reply.hotkey, "attempts": reply.attempts,
              "miner_seconds": round(reply.miner_seconds, 4), "fee_rao": reply.fee_rao,
              "payment_hash": "0x" + reply.payment_hash.hex() if reply.payment_hash else "",
              "payment_block": reply.payment_block,
              "contributors": [{"uid": c.uid, "hotkey": c.hotkey, "share": round(c.share, 6),
                                "seconds": round(c.seconds, 4)} for c in reply.contributors]}
    if kind == "next_words":
        result["next_words"] = [[[w.word, w.probability] for w in d.words] for d in reply.next_words.distributions]
    elif kind == "text":
        result["text"] = reply.text
    elif kind == "translations":
        result["translations"] = list(reply.translations.translations)
    else:
        result["embeddings"] = [list(e.values) for e in reply.embeddings.embeddings]
    if args.json:
        output.print_json(result)
        return 0
    if kind == "next_words":
        for prefix, words in zip(args.texts, result["next_words"], strict=True):
            print(f"{prefix!r}: " + "  ".join(f"{w!r} {p:.3f}" for w, p in words))
    elif kind == "text":
        print(args.texts[0] + reply.text)
    elif kind == "translations":
        for line in result["translations"]:
            print(line)
    else:
        vectors = result["embeddings"]
        print(f"{len(vectors)} vectors of {len(vectors[0]) if vectors else 0} dimensions (--json prints them)")
    paid = f"{output.tao(reply.fee_rao)} TAO in block {reply.payment_block}" if reply.fee_rao else "free"
    if len(reply.contributors) > 1:
        mixed = ", ".join(f"uid {c.uid} ({c.share:.0%})" for c in reply.contributors)
        output.note(f"the network's answer: {mixed} mixed, via {target}; {paid}")
    else:
        output.note(f"answered by uid {reply.uid} ({reply.hotkey}) in {reply.miner_seconds:.2f}s via {target}; {paid}")
    return 0
