"""The model behind the batcher: one batch of one call, run on the compute thread.

Batch keys (built by the server, one per call and the settings that must match within a batch):
    ("NextWord",)                         rows: (prefix, top_k)    -> list[(word, probability)]
    ("Generate", max_tokens, temperature) rows: prompt             -> str
    ("Translate", source, target)         rows: sentence           -> str
    ("Embed",)                            rows: text               -> np.ndarray (unit vector)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from typing import Any

from services.miner import metrics
from services.miner.model import Model, warm_up

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, task: str, methods: Sequence[str], max_batch: int = 8) -> None:
        self.task = task
        self.methods = tuple(methods)
        self.max_batch = max_batch    # rows per model call: a bigger request is computed in slices
        self.model: Model | None = None
        self.calls = 0          # model batches run for requests (warm-up excluded): tests count these

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def model_name(self) -> str:
        return self.model.name if self.model is not None else ""

    def install(self, model: Model, *, warm: bool = True) -> None:
        """Warm the model up and start serving it (on the compute thread)."""
        if warm:
            started = time.perf_counter()
            warm_up(model, self.methods)
            log.info("warm-up of %s took %.2fs", model.name, time.perf_counter() - started)
        self.model = model

    def execute(self, key: Hashable, rows: list[Any]) -> Sequence[Any]:
        if self.model is None:
            raise RuntimeError("execute before the model was installed")
        self.calls += 1
        out: list[Any] = []
        for start in range(0, len(rows), self.max_batch):
            out.extend(self._execute(self.model, key, rows[start:start + self.max_batch]))
        return out

    def _execute(self, model: Model, key: Hashable, rows: list[Any]) -> Sequence[Any]:
        method = key[0]   # type: ignore[index]
        started = time.perf_counter()
        if method == "NextWord":
            texts = [prefix for prefix, _ in rows]
            ranked = model.next_words(texts, max(k for _, k in rows))
            results: Sequence[Any] = [r[:k] for r, (_, k) in zip(ranked, rows, strict=True)]
        elif method == "Generate":
            _, max_tokens, temperature = key   # type: ignore[misc]
            texts = rows
            results = model.generate(texts, max_tokens, temperature)
        elif method == "Translate":
            _, source, target = key   # type: ignore[misc]
            texts = rows
            results = model.translate(texts, source, target)
        elif method == "Embed":
            texts = rows
            results = list(model.embed(texts))
        else:
            raise ValueError(f"unknown batch key {key!r}")
        seconds = time.perf_counter() - started
        n_tokens = model.count_tokens(texts)
        metrics.tokens.labels(self.task, model.name).inc(n_tokens)
        if seconds > 0:
            metrics.tokens_per_second.labels(self.task, model.name).set(n_tokens / seconds)
        return results
