"""Loading a model for a miner: real Hugging Face models, degraded copies, and adversarial toys.

Every loaded model answers the same four calls (`next_words`, `generate`, `translate`, `embed`);
a call the model cannot do raises `Incapable`, and the miner serves only its task's calls anyway.
All of them are synchronous and CPU-bound: the miner runs them on its compute thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from services.common.errors import FailedPrecondition, InvalidRequest
from services.miner import packed, toys
from services.miner.sources import ModelSource, resolve
from services.miner.tasks import embed as embed_task
from services.miner.tasks import generate as generate_task
from services.miner.tasks import nextword as nextword_task
from services.miner.tasks import translate as translate_task
from services.miner.tasks.nextword import WordProb

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Incapable(FailedPrecondition):
    """The loaded model cannot do this call (an encoder asked to generate, say)."""


class Model(Protocol):
    name: str
    kind: str

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[WordProb]]: ...
    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]: ...
    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]: ...
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
    def count_tokens(self, texts: Sequence[str]) -> int: ...


@dataclass
class CausalLM:
    """A decoder-only language model: next words, generation, few-shot translation."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    kind: str = "causal"
    _table: nextword_task.TokenTable | None = field(default=None, init=False, repr=False)

    @property
    def token_table(self) -> nextword_task.TokenTable:
        if self._table is None:
            self._table = nextword_task.TokenTable.build(self.tokenizer)
        return self._table

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[WordProb]]:
        return nextword_task.next_words(self.model, self.tokenizer, self.token_table, prefixes, top_k)

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        return generate_task.generate(self.model, self.tokenizer, prompts, max_tokens, temperature)

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        return translate_task.translate(self.model, self.tokenizer, sentences, source, target)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise Incapable(f"{self.name} is a causal language model: it does not embed")

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])


@dataclass
class Encoder:
    """A sentence-embedding encoder (BERT/MPNet family): mean-pooled, L2-normalised vectors."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    kind: str = "encoder"

    @property
    def dimensions(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_task.embed(self.model, self.tokenizer, texts)

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[WordProb]]:
        raise Incapable(f"{self.name} is an encoder: it does not predict words")

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        raise Incapable(f"{self.name} is an encoder: it does not generate")

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        raise Incapable(f"{self.name} is an encoder: it does not translate")

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])


@dataclass(frozen=True, slots=True)
class LoadOptions:
    dtype: str = "float32"
    threads: int = 0            # torch intra-op threads; 0 leaves torch's default (one per core)
    degrade: float = 0.0        # Gaussian weight noise, as a fraction of each tensor's std (0: the real model)
    seed: int = 0               # seeds the degradation noise and the noise toy
    gguf_file: str | None = None
    kind: str | None = None     # "causal" or "encoder" when the folder's config does not tell
    pack: bool = True           # oneDNN-packed linear layers (services.miner.packed): ~2x faster matmuls


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def load_model(spec: str, options: LoadOptions = LoadOptions()) -> Model:
    """An alias ("smollm2-135m", "gemma3-270m", "minilm-l6", "mpnet-base", "echo", "noise"), a local
    folder (or .gguf file) or a hub id, loaded with `from_pretrained`."""
    if options.dtype not in DTYPES:
        raise InvalidRequest(f"dtype {options.dtype!r} is not one of {', '.join(DTYPES)}")
    set_threads(options.threads)
    source = resolve(spec, gguf_file=options.gguf_file, kind=options.kind)
    started = time.perf_counter()
    model = _load(source, options)
    log.info("loaded %s (%s) from %s in %.1fs", source.name, source.kind, source.path, time.perf_counter() - started)
    return model


def _load(source: ModelSource, options: LoadOptions) -> Model:
    if source.kind == "toy":
        return toys.make(source.name, seed=options.seed)
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    dtype = DTYPES[options.dtype]
    # On stderr, like the conversion's bars: a big model takes a while and the operator should see why.
    with tqdm(total=3 if options.degrade > 0 else 2, desc=f"load {source.name}", unit="step") as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(source.path)
        bar.update()
        bar.set_postfix_str("weights")
        if source.kind == "encoder":
            net = AutoModel.from_pretrained(source.path, dtype=dtype)
        else:
            net = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype)
        net.eval()
        net.requires_grad_(False)
        bar.update()
        name = source.name
        if options.degrade > 0:
            bar.set_postfix_str(f"degrade {options.degrade:g}")
            degrade(net, options.degrade, options.seed)
            name = f"{name}+noise{options.degrade:g}"
            bar.update()
    if options.pack:
        log.info("%s: %d linear layers packed for oneDNN", source.name, packed.pack_linears(net))
    if source.kind == "encoder":
        return Encoder(name, net, tokenizer)
    return CausalLM(name, net, tokenizer)


@torch.no_grad()
def degrade(module: torch.nn.Module, fraction: float, seed: int = 0) -> None:
    """Add N(0, (fraction * std(tensor))^2) noise to every floating-point weight, in place and seeded.

    A quality ladder for tests and demos: 0.1 costs SmolLM2 ~0.7 nats of next-word loss. Tied
    weights (embedding = output layer) are one tensor and get noise once. A packed model is unpacked
    for it and packed again, so it gets exactly the noise its unpacked self would.
    """
    if not 0 <= fraction <= 10:
        raise InvalidRequest(f"degrade fraction {fraction} is outside 0..10")
    repack = packed.unpack_linears(module) > 0
    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for _, tensor in sorted(module.state_dict(keep_vars=True).items()):
        if not tensor.is_floating_point() or tensor.numel() < 2 or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        std = tensor.float().std()
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * (fraction * std)
        tensor.add_(noise.to(tensor.dtype))
    if repack:
        packed.pack_linears(module)


WARM_UP_TEXT = "The quick brown fox jumps over the lazy dog"


def warm_up(model: Model, methods: Sequence[str]) -> None:
    """One small call of each served method, so the first real request pays no lazy initialisation."""
    for method in methods:
        if method == "NextWord":
            model.next_words([WARM_UP_TEXT], 5)
        elif method == "Generate":
            model.generate([WARM_UP_TEXT], 2, 0.0)
        elif method == "Translate":
            model.translate(["Good morning."], "en", "fr")
        elif method == "Embed":
            model.embed([WARM_UP_TEXT])
