"""Text continuation with a causal LM: batched (left padding), greedy at temperature 0, sampled above."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList


@lru_cache(maxsize=4)
def _newline_tokens(tokenizer) -> torch.Tensor:
    """A bool mask over the vocabulary: tokens whose text holds a line break."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    return torch.tensor(["\n" in t for t in texts])


class _StopAtNewline(StoppingCriteria):
    """Per row: done once the row has produced a line break (the rest of the batch goes on)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.mask[input_ids[:, -1]]


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: Sequence[str], max_tokens: int, temperature: float, *, stop_at_newline: bool = False
) -> list[str]:
    """The continuation of each prompt (without the prompt), at most `max_tokens` tokens."""
    enc = tokenizer(list(prompts), padding=True, padding_side="left", return_tensors="pt")
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_k=None,
        top_p=None,
        pad_token_id=_pad_id(tokenizer),
        eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
    )
    stopping = StoppingCriteriaList([_StopAtNewline(_newline_tokens(tokenizer))]) if stop_at_newline else None
    out = model.generate(**enc, generation_config=config, stopping_criteria=stopping)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
