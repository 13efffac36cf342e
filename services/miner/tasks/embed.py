"""Sentence embeddings: mean of the token vectors under the attention mask, then L2-normalised
(what sentence-transformers does for all-MiniLM-L6-v2 and all-mpnet-base-v2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

MAX_TOKENS = 512
CHUNK = 32   # texts per forward pass, sorted by length so that little is padding


@torch.inference_mode()
def embed(model, tokenizer, texts: Sequence[str]) -> np.ndarray:
    """A float32 array (len(texts), hidden) of unit vectors, in the order of `texts`."""
    max_length = min(int(getattr(tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS), MAX_TOKENS)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), CHUNK):
        rows = order[start:start + CHUNK]
        enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out[rows] = F.normalize(pooled, dim=-1).numpy()
    return out
