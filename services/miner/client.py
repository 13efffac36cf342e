"""A validator's client for one miner: signs every request, checks every response's signature.

    async with MinerClient("127.0.0.1:50061", validator_hotkey, miner_hotkey) as miner:
        words = await miner.next_word(["The capital of France is"], top_k=10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bittensor_wallet import Keypair
from grpc import aio

from agora.miner.v1 import miner_pb2, miner_pb2_grpc
from services.common.errors import Unauthenticated
from services.miner import auth


class BadResponseSignature(Unauthenticated):
    """The miner's answer is not signed by the miner that was asked, or was altered."""


class MinerClient:
    def __init__(
        self, target: str, keypair: Keypair, miner_hotkey: str, *,
        timeout: float = 30.0, verify: bool = True, channel: aio.Channel | None = None,
    ) -> None:
        self.keypair = keypair
        self.miner_hotkey = miner_hotkey
        self.timeout = timeout
        self.verify = verify
        self._own_channel = channel is None
        self.channel = channel or aio.insecure_channel(target)
        self.stub = miner_pb2_grpc.MinerStub(self.channel)

    async def __aenter__(self) -> MinerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    async def call(self, name: str, request: Any, *, timeout: float | None = None) -> Any:
        """Sign `request` for method `name`, send it, and check the response's signature."""
        path = auth.method_path(name)
        digest = auth.sign_request(self.keypair, path, request, self.miner_hotkey)
        response = await getattr(self.stub, name)(request, timeout=timeout or self.timeout)
        if self.verify and not auth.verify_response(path, response, digest, self.miner_hotkey):
            raise BadResponseSignature(f"{name} response is not signed by miner {self.miner_hotkey}")
        return response

    async def info(self) -> miner_pb2.InfoResponse:
        return await self.call("Info", miner_pb2.InfoRequest())

    async def next_word(self, prefixes: Sequence[str], top_k: int = 10) -> list[list[tuple[str, float]]]:
        r = await self.call("NextWord", miner_pb2.NextWordRequest(prefixes=list(prefixes), top_k=top_k))
        return [[(c.word, c.probability) for c in p.candidates] for p in r.predictions]

    async def generate(self, prompt: str, max_tokens: int = 32, temperature: float = 0.0) -> str:
        r = await self.call("Generate", miner_pb2.GenerateRequest(prompt=prompt, max_tokens=max_tokens,
                                                                   temperature=temperature))
        return r.text

    async def translate(self, sentences: Sequence[str], target: str, source: str = "en") -> list[str]:
        r = await self.call("Translate", miner_pb2.TranslateRequest(
            sentences=list(sentences), source_language=source, target_language=target))
        return list(r.translations)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        r = await self.call("Embed", miner_pb2.EmbedRequest(texts=list(texts)))
        return np.array([list(e.values) for e in r.embeddings], dtype=np.float32)
