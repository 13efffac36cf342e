"""The agora.miner.v1.Miner servicer: protos in, auth, the batcher, signed protos out.

Each call goes: authenticate (before anything else) -> validate -> queue by stake -> batch on the
compute thread -> sign the response. Only the task's calls are registered with the server, so
gRPC itself answers UNIMPLEMENTED to the others (and reflection still describes the whole service).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from bittensor_wallet import Keypair
from grpc import aio

from agora.miner.v1 import miner_pb2
from services.common.error_mapping import status_code_for
from services.common.errors import AgoraError, InvalidRequest, OutOfRange, Unavailable
from services.common.metrics import CODE_NAMES
from services.miner import auth, metrics
from services.miner.auth import SERVICE, method_path
from services.miner.batcher import Batcher
from services.miner.engine import Engine
from services.miner.tasks.translate import TARGETS, check_languages

SERVICE_DESCRIPTOR = miner_pb2.DESCRIPTOR.services_by_name["Miner"]
TASK_ENUM = {"next-token": miner_pb2.NEXT_TOKEN, "translation": miner_pb2.TRANSLATION, "embedding": miner_pb2.EMBEDDING}

DEFAULT_TOP_K = 10
DEFAULT_MAX_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Limits:
    max_items: int = 64             # prefixes / sentences / texts per request
    max_text_chars: int = 8_192
    max_top_k: int = 100
    max_tokens: int = 512
    max_temperature: float = 5.0


class MinerService:
    """Implements the Miner RPCs; `add_to_server` registers Info plus the task's methods."""

    def __init__(
        self,
        *,
        task: str,
        methods: Sequence[str],
        model_name: str,
        netuid: int,
        version: str,
        keypair: Keypair,
        authenticator: auth.Authenticator,
        engine: Engine,
        batcher: Batcher,
        limits: Limits = Limits(),
    ) -> None:
        self.task = task
        self.methods = tuple(methods)
        self.model_name = model_name
        self.netuid = netuid
        self.version = version
        self.keypair = keypair
        self.authenticator = authenticator
        self.engine = engine
        self.batcher = batcher
        self.limits = limits
        self.hotkey = keypair.ss58_address   # the keypair derives it anew on every read
        # Metric children bound once: labels() takes a lock and hashes its labels on every call.
        self._inflight = metrics.inflight_requests.labels(task)
        self._seconds = {name: metrics.request_seconds.labels(task, name) for name in ("Info", *self.methods)}
        self._answered: dict[tuple[str, str], Any] = {}   # (method, result) -> agora_miner_requests child

    # ---- plumbing shared by every call ----

    async def _serve(
        self, name: str, request: Any, context: aio.ServicerContext,
        work: Callable[[auth.CallerInfo], Awaitable[Any]],
    ) -> Any:
        path = method_path(name)
        started = time.perf_counter()
        result = "OK"
        self._inflight.inc()
        try:
            envelope = request.auth if request.HasField("auth") else None
            try:
                caller = await self.authenticator.check(path, envelope, lambda: auth.body_hash(request))
            except AgoraError as exc:
                metrics.auth_failures.labels(getattr(exc, "reason", type(exc).__name__)).inc()
                raise
            response = await work(caller)
            auth.sign_response(self.keypair, path, response, auth.request_digest(path, request.auth))
            return response
        except AgoraError as exc:
            result = CODE_NAMES.get(status_code_for(exc), "Unknown")
            raise
        except asyncio.CancelledError:
            result = "Canceled"
            raise
        except Exception:
            result = "Internal"
            raise
        finally:
            self._inflight.dec()
            answered = self._answered.get((name, result))
            if answered is None:
                answered = self._answered[name, result] = metrics.requests.labels(self.task, name, result)
            answered.inc()
            self._seconds[name].observe(time.perf_counter() - started)

    async def _run(
        self, key: Hashable, rows: Sequence[Any], caller: auth.CallerInfo, context: aio.ServicerContext
    ) -> list[Any]:
        if not self.engine.ready:
            raise Unavailable(f"the model {self.model_name} is still loading; retry shortly")
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        try:
            return await self.batcher.submit(key, rows, priority=caller.stake, deadline=deadline)
        except AgoraError as exc:
            if status_code_for(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED:
                metrics.shed.labels(self.task, type(exc).__name__).inc()
            raise

    def _texts(self, texts: Sequence[str], what: str) -> list[str]:
        if not texts:
            raise InvalidRequest(f"{what} is empty: send at least one")
        if len(texts) > self.limits.max_items:
            raise OutOfRange(f"{len(texts)} {what} in one request; at most {self.limits.max_items}")
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise OutOfRange(f"{what}[{i}] has {len(text)} characters; at most {self.limits.max_text_chars}")
        return list(texts)

    # ---- the calls ----

    async def Info(self, request: miner_pb2.InfoRequest, context: aio.ServicerContext) -> miner_pb2.InfoResponse:
        async def work(caller: auth.CallerInfo) -> miner_pb2.InfoResponse:
            model = self.engine.model
            return miner_pb2.InfoResponse(
                task=TASK_ENUM[self.task],
                model=self.model_name,
                hotkey=self.hotkey,
                netuid=self.netuid,
                version=self.version,
                methods=list(self.methods),
                ready=self.engine.ready,
                max_request_items=self.limits.max_items,
                max_top_k=self.limits.max_top_k if "NextWord" in self.methods else 0,
                max_tokens=self.limits.max_tokens if "Generate" in self.methods else 0,
                target_languages=list(TARGETS) if "Translate" in self.methods else [],
                embedding_dimensions=int(getattr(model, "dimensions", 0)) if "Embed" in self.methods else 0,
            )

        return await self._serve("Info", request, context, work)

    async def NextWord(
        self, request: miner_pb2.NextWordRequest, context: aio.ServicerContext
    ) -> miner_pb2.NextWordResponse:
        async def work(caller: auth.CallerInfo) -> miner_pb2.NextWordResponse:
            prefixes = self._texts(request.prefixes, "prefixes")
            top_k = request.top_k or DEFAULT_TOP_K
            if top_k > self.limits.max_top_k:
                raise OutOfRange(f"top_k {top_k} is above {self.limits.max_top_k}")
            ranked = await self._run(("NextWord",), [(p, top_k) for p in prefixes], caller, context)
            return miner_pb2.NextWordResponse(predictions=[
                miner_pb2.WordCandidates(candidates=[miner_pb2.WordCandidate(word=w, probability=p) for w, p in words])
                for words in ranked
            ])

        return await self._serve("NextWord", request, context, work)

    async def Generate(
        self, request: miner_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> miner_pb2.GenerateResponse:
        async def work(caller: auth.CallerInfo) -> miner_pb2.GenerateResponse:
            (prompt,) = self._texts([request.prompt], "prompt")
            max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
            if max_tokens > self.limits.max_tokens:
                raise OutOfRange(f"max_tokens {max_tokens} is above {self.limits.max_tokens}")
            temperature = float(request.temperature)
            if not math.isfinite(temperature) or not 0 <= temperature <= self.limits.max_temperature:
                raise InvalidRequest(f"temperature {temperature} is outside 0..{self.limits.max_temperature}")
            # Rounded so that requests with the same settings share batches.
            key = ("Generate", max_tokens, round(temperature, 3))
            (text,) = await self._run(key, [prompt], caller, context)
            return miner_pb2.GenerateResponse(text=text)

        return await self._serve("Generate", request, context, work)

    async def Translate(
        self, request: miner_pb2.TranslateRequest, context: aio.ServicerContext
    ) -> miner_pb2.TranslateResponse:
        async def work(caller: auth.CallerInfo) -> miner_pb2.TranslateResponse:
            sentences = self._texts(request.sentences, "sentences")
            source, target = check_languages(request.source_language, request.target_language)
            out = await self._run(("Translate", source, target), sentences, caller, context)
            return miner_pb2.TranslateResponse(translations=out)

        return await self._serve("Translate", request, context, work)

    async def Embed(self, request: miner_pb2.EmbedRequest, context: aio.ServicerContext) -> miner_pb2.EmbedResponse:
        async def work(caller: auth.CallerInfo) -> miner_pb2.EmbedResponse:
            texts = self._texts(request.texts, "texts")
            vectors = await self._run(("Embed",), texts, caller, context)
            return miner_pb2.EmbedResponse(embeddings=[miner_pb2.Embedding(values=v.tolist()) for v in vectors])

        return await self._serve("Embed", request, context, work)


def add_to_server(service: MinerService, server: aio.Server) -> None:
    """Register Info and the task's methods only: gRPC answers UNIMPLEMENTED to the rest."""
    handlers = {}
    for name in ("Info", *service.methods):
        method = SERVICE_DESCRIPTOR.methods_by_name[name]
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=getattr(miner_pb2, method.input_type.name).FromString,
            response_serializer=getattr(miner_pb2, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
