"""The user of `make run`: pays a validator of each subnet in turn for a query and shows who answered."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bittensor_wallet import Keypair
from grpc import aio

from services.chain.client import ChainClient
from services.common.errors import AgoraError
from services.common.units import format_tao
from services.devnet.subnets import LiveSubnet
from services.validator import client as validator_client

Say = Callable[[str], None]


@dataclass
class UserStats:
    answered: int = 0
    failed: int = 0
    paid_rao: int = 0
    first_answer_at: float | None = None   # time.monotonic() of the first answered query
    by_miner: dict[str, int] = field(default_factory=dict)   # "subnet/miner label" -> answers


def _request(sub: LiveSubnet, words: tuple[str, ...]):
    if sub.plan.task == "next-token":
        return validator_client.generate_request(sub.netuid, words[0], max_tokens=12), f"{words[0]!r}"
    if sub.plan.task == "translation":
        return validator_client.translate_request(sub.netuid, list(words[1:]), words[0]), \
            f"{words[1]!r} -> {words[0]}"
    return validator_client.embed_request(sub.netuid, list(words)), f"{len(words)} texts"


def _answer(reply) -> str:
    kind = reply.WhichOneof("output")
    if kind == "text":
        return repr(reply.text.strip()[:60])
    if kind == "translations":
        return repr(" / ".join(reply.translations.translations)[:60])
    vectors = list(reply.embeddings.embeddings)
    return f"{len(vectors)} vectors of {len(vectors[0].values) if vectors else 0} dims"


async def ask_forever(chain: ChainClient, payer: Keypair, subnets: list[LiveSubnet], stats: UserStats, say: Say,
                      pause_s: float = 6.0) -> None:
    rounds = max(len(s.plan.queries) for s in subnets)
    turns = itertools.cycle([(s, s.plan.queries[i]) for i in range(rounds) for s in subnets
                             if i < len(s.plan.queries)])
    targets: dict[int, str] = {}
    for sub, words in turns:
        request, shown = _request(sub, words)
        try:
            target = targets.get(sub.netuid) or await validator_client.discover(chain, sub.netuid)
            targets[sub.netuid] = target
            reply = await validator_client.paid_query(chain, target, payer, request, timeout=90)
        except (aio.AioRpcError, AgoraError) as exc:
            targets.pop(sub.netuid, None)   # ask the metagraph again next time
            stats.failed += 1
            detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, aio.AioRpcError) else str(exc)
            say(f"  user       subnet {sub.netuid} {shown}: not answered ({detail})")
        else:
            stats.answered += 1
            stats.paid_rao += reply.fee_rao
            if stats.first_answer_at is None:
                stats.first_answer_at = time.monotonic()
            label = sub.labels.get(reply.hotkey, reply.hotkey[:10])
            stats.by_miner[f"{sub.plan.name}/{label}"] = stats.by_miner.get(f"{sub.plan.name}/{label}", 0) + 1
            paid = f"paid {format_tao(reply.fee_rao)} TAO in block #{reply.payment_block}" if reply.fee_rao else "free"
            say(f"  user       subnet {sub.netuid} {shown} -> uid {reply.uid} {label} in {reply.miner_seconds:.1f}s"
                f" ({paid}): {_answer(reply)}")
        await asyncio.sleep(pause_s)
