"""A user's query: what the subnet's task lets them ask, how a miner is asked it, what a well-formed
answer is, and the desk that takes the payment and then routes the query.

Order matters for the user's money: everything that can refuse a query without the chain (its
shape, the task, whether any miner serves, the payment's own checks) runs before the payment is
submitted; after the chain has included it, the query is served. "Serves" is what this validator
last saw: a miner with an endpoint that answered the last round that asked it (or was not asked
yet) and has not failed a user's query since. When there is none, the query is refused with
UNAVAILABLE and the payment is never submitted.

What remains: a miner seen answering can fail after the payment is in a block (it went away since
the last round, or is too slow this time). Then, once every chosen miner has failed, the query
ends UNAVAILABLE ("no miner answered") and the fee stays paid: the validator holds only its
coldkey's public address, so it cannot sign a refund.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agora.chain.v1 import chain_pb2
from services.common.errors import AgoraError, InvalidRequest, OutOfRange, PermissionDenied
from services.miner.client import MinerClient
from services.validator import metrics
from services.validator.ensemble import mix, mixing_shares
from services.validator.items import TRANSLATION_LANGS
from services.validator.payments import Cashier, PaymentRequired, Receipt
from services.validator.router import NoMinerAnswered, NoMinerServing, Routed, Router

GENERATE, TRANSLATE, EMBED, NEXT_WORD = "generate", "translate", "embed", "next_word"
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "next-token": (GENERATE, NEXT_WORD),
    "translation": (TRANSLATE, GENERATE),
    "embedding": (EMBED,),
}
MAX_ITEMS = 64            # sentences or texts per query (a miner's request limit)
MAX_CHARS = 8_192
MAX_TOKENS = 512
DEFAULT_MAX_TOKENS = 32
MAX_TEMPERATURE = 5.0
DEFAULT_TOP_K = 10
MAX_TOP_K = 64
MAX_ENSEMBLE = 16


class WrongTask(InvalidRequest):
    """The input is not one this subnet's task serves."""


@dataclass(frozen=True, slots=True)
class UserQuery:
    kind: str                              # generate | translate | embed
    prompt: str = ""
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    texts: tuple[str, ...] = ()            # sentences to translate, texts to embed, prefixes to continue
    target_language: str = ""
    top_k: int = DEFAULT_TOP_K             # next_word: words per prefix
    ensemble: int = 1                      # next_word: miners whose distributions are mixed

    @property
    def items(self) -> int:
        return len(self.texts) if self.kind != GENERATE else 1


def _texts(values: Sequence[str], what: str) -> tuple[str, ...]:
    if not values:
        raise InvalidRequest(f"{what} is empty: send at least one")
    if len(values) > MAX_ITEMS:
        raise OutOfRange(f"{len(values)} {what}; at most {MAX_ITEMS} per query")
    for i, text in enumerate(values):
        if not text.strip():
            raise InvalidRequest(f"{what}[{i}] is blank")
        if len(text) > MAX_CHARS:
            raise OutOfRange(f"{what}[{i}] has {len(text)} characters; at most {MAX_CHARS}")
    return tuple(values)


def generate_query(prompt: str, max_tokens: int = 0, temperature: float = 0.0) -> UserQuery:
    (prompt,) = _texts([prompt], "prompt")
    max_tokens = max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens > MAX_TOKENS:
        raise OutOfRange(f"max_tokens {max_tokens} is above {MAX_TOKENS}")
    if not math.isfinite(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(f"temperature {temperature} is outside 0..{MAX_TEMPERATURE}")
    return UserQuery(GENERATE, prompt=prompt, max_tokens=max_tokens, temperature=float(temperature))


def translate_query(sentences: Sequence[str], target_language: str) -> UserQuery:
    if target_language not in TRANSLATION_LANGS:
        raise InvalidRequest(f"target language {target_language!r} is not one of {', '.join(TRANSLATION_LANGS)}")
    return UserQuery(TRANSLATE, texts=_texts(sentences, "sentences"), target_language=target_language)


def embed_query(texts: Sequence[str]) -> UserQuery:
    return UserQuery(EMBED, texts=_texts(texts, "texts"))


def next_word_query(prefixes: Sequence[str], top_k: int = 0, ensemble: int = 0) -> UserQuery:
    top_k = top_k or DEFAULT_TOP_K
    if top_k > MAX_TOP_K:
        raise OutOfRange(f"top_k {top_k} is above {MAX_TOP_K}")
    if ensemble > MAX_ENSEMBLE:
        raise OutOfRange(f"ensemble {ensemble} is above {MAX_ENSEMBLE} miners")
    return UserQuery(NEXT_WORD, texts=_texts(prefixes, "prefixes"), top_k=top_k, ensemble=max(1, ensemble))


def check_task(query: UserQuery, task: str, netuid: int) -> None:
    allowed = TASK_KINDS.get(task, ())
    if query.kind not in allowed:
        raise WrongTask(f"subnet {netuid} does {task}: it answers {', '.join(allowed) or 'nothing'}, "
                        f"not {query.kind}")


async def ask(query: UserQuery, client: MinerClient, timeout: float) -> Any:
    from agora.miner.v1 import miner_pb2

    if query.kind == GENERATE:
        request = miner_pb2.GenerateRequest(prompt=query.prompt, max_tokens=query.max_tokens,
                                            temperature=query.temperature)
        return (await client.call("Generate", request, timeout=timeout)).text
    if query.kind == TRANSLATE:
        request = miner_pb2.TranslateRequest(sentences=list(query.texts), source_language="en",
                                             target_language=query.target_language)
        return list((await client.call("Translate", request, timeout=timeout)).translations)
    if query.kind == NEXT_WORD:
        request = miner_pb2.NextWordRequest(prefixes=list(query.texts), top_k=query.top_k)
        response = await client.call("NextWord", request, timeout=timeout)
        return [[(c.word, c.probability) for c in p.candidates] for p in response.predictions]
    response = await client.call("Embed", miner_pb2.EmbedRequest(texts=list(query.texts)), timeout=timeout)
    return [list(e.values) for e in response.embeddings]


def well_formed(query: UserQuery, answer: Any) -> bool:
    """A miner's answer has the shape the query asks for (else the next miner is asked)."""
    if query.kind == GENERATE:
        return isinstance(answer, str)
    if query.kind == TRANSLATE:
        return isinstance(answer, list) and len(answer) == len(query.texts) and all(isinstance(a, str) for a in answer)
    if query.kind == NEXT_WORD:
        return (isinstance(answer, list) and len(answer) == len(query.texts)
                and all(len(c) <= query.top_k and all(math.isfinite(p) and p >= 0 for _, p in c) for c in answer))
    if not isinstance(answer, list) or len(answer) != len(query.texts):
        return False
    try:
        vectors = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return vectors.ndim == 2 and vectors.shape[1] > 0 and bool(np.isfinite(vectors).all())


@dataclass(frozen=True, slots=True)
class QueryResult:
    answer: Any
    contributors: tuple[tuple[Routed, float], ...]   # each answering miner and its share of the answer
    receipt: Receipt | None    # None when the query was free

    @property
    def routed(self) -> Routed:
        """The first (for a single miner's answer, the only) contributor."""
        return self.contributors[0][0]


class QueryDesk:
    """Takes a query's payment, then routes it; counts and times every query by its result."""

    def __init__(self, *, netuid: int, task: str, cashier: Cashier, router: Router, timeout_s: float) -> None:
        self.netuid = netuid
        self.task = task
        self.cashier = cashier
        self.router = router
        self.timeout_s = timeout_s

    async def serve(self, query: UserQuery, payment: chain_pb2.Extrinsic | None, payer: str,
                    timeout_s: float | None = None) -> QueryResult:
        started = time.perf_counter()
        result = "error"
        try:
            check_task(query, self.task, self.netuid)
            # chosen before the payment and kept after it: no miner up, no charge, and no refusal
            # once the user has paid
            candidates = (self.router.ensemble_candidates(query.ensemble) if query.ensemble > 1
                          else self.router.candidates())
            receipt = None
            if self.cashier.fee_rao > 0:
                receipt = await self.cashier.settle(self.cashier.check(payment, payer))
                metrics.fees_earned_rao.labels(str(self.netuid)).inc(receipt.payment.amount_rao)
            budget = min(timeout_s or self.timeout_s, self.timeout_s)
            asking = (lambda client, left: ask(query, client, left), lambda answer: well_formed(query, answer))
            if query.ensemble > 1:
                answered = await self.router.route_all(*asking, budget, candidates)
                shares = mixing_shares([self.router.loop.weight_score(r.endpoint.uid) for r in answered])
                # a miner the validator scores at 0 adds nothing to the mix and is not named
                kept = [(r, share) for r, share in zip(answered, shares, strict=True) if share > 0]
                answer = mix([r.answer for r, _ in kept], [share for _, share in kept], query.top_k)
                contributors = tuple(kept)
            else:
                routed = await self.router.route(*asking, budget, candidates)
                answer, contributors = routed.answer, ((routed, 1.0),)
            result = "ok"
            return QueryResult(answer, contributors, receipt)
        except PaymentRequired:
            result = "unpaid"
            raise
        except (NoMinerServing, NoMinerAnswered) as exc:
            result = "no_miner" if isinstance(exc, NoMinerServing) else "failed"
            raise
        except InvalidRequest:
            result = "invalid"
            raise
        except (PermissionDenied, AgoraError):
            result = "refused"
            raise
        finally:
            metrics.queries.labels(str(self.netuid), result).inc()
            metrics.query_seconds.labels(str(self.netuid)).observe(time.perf_counter() - started)
