"""Next whole word from a subword language model.

A word is a run of whitespace followed by a run of non-whitespace (" Paris", " Paris.", "\\n\\nThe"),
which is how the validator cuts its held-out text: the prefix ends right before the whitespace, and
the answer is the next word with its leading whitespace. Words, not model tokens, are the unit so
that miners with different tokenizers compete on the same events.

The model only gives next-token probabilities, so the probability of a whole word w = t1..tn is

    P(w) = p(t1 | prefix) * ... * p(tn | prefix t1..tn-1) * P(the next token starts with whitespace or ends the text)

(the last factor: the word really ends there, " Paris" and not " Parisian"). When a token itself
holds the end of the word (".\\n" after " Paris"), the word ends inside it and that token's
probability is the last factor. Distinct token paths are disjoint events, so the candidates'
probabilities add up to at most 1 (one word reached by two tokenizations sums both paths).

The search is best-first over partial words with a shared KV cache: step 0 runs the prefixes, each
later step feeds one token per partial word. A partial word whose probability is already below
the k-th best finished word cannot enter the top k (extending only lowers it) and is dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

WordProb = tuple[str, float]   # (" Paris", 0.77)

MAX_STEPS = 6           # tokens per word, ending token included: longer words are not offered
BRANCH = 8              # tokens tried after each partial word
_TOP_BLOCK = 128        # vocabulary entries per block in _top
MIN_PROB = 1e-5         # partial words below this are dropped (validators floor probabilities at 1e-4)
_WORD = re.compile(r"\s+\S+")

# Token classes (see TokenTable).
SPECIAL, SPACE, SPACE_WORD, SPACE_WORD_END, CONT, CONT_END = range(6)


@dataclass(frozen=True)
class TokenTable:
    """What each vocabulary entry does to a word, computed once per tokenizer.

    SPECIAL (end of text, control tokens), SPACE (only whitespace: " ", "\\n"), SPACE_WORD (" Paris"),
    SPACE_WORD_END (" Paris\\n": a whole word inside one token), CONT ("is", "."), CONT_END (".\\n").
    """

    classes: np.ndarray          # int8 per token id
    ends_word: torch.Tensor      # float mask: tokens that end a word that is in progress (whitespace first, or special)
    starts_word: torch.Tensor    # bool mask: tokens a new word can start with after the prefix
    anchor: list[int]            # ids decoded before a word, so its leading whitespace survives decoding
    anchor_text: str

    @classmethod
    def build(cls, tokenizer) -> TokenTable:
        vocab = len(tokenizer)
        # Decoding a token after an anchor keeps its leading space: a sentencepiece decoder strips
        # the leading space of a whole text, but not of its second token.
        anchor = tokenizer.encode("a", add_special_tokens=False)[:1]
        anchor_text = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
        texts = tokenizer.batch_decode(
            [[*anchor, i] for i in range(vocab)], clean_up_tokenization_spaces=False, skip_special_tokens=False
        )
        special = set(tokenizer.all_special_ids)
        special.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special)
        classes = np.empty(vocab, dtype=np.int8)
        for i, text in enumerate(texts):
            classes[i] = SPECIAL if i in special else _classify(text[len(anchor_text):])
        classes_t = torch.from_numpy(classes.astype(np.int64))
        ends_word = ((classes_t == SPECIAL) | (classes_t == SPACE) | (classes_t == SPACE_WORD)
                     | (classes_t == SPACE_WORD_END)).float()
        starts_word = (classes_t == SPACE) | (classes_t == SPACE_WORD) | (classes_t == SPACE_WORD_END)
        return cls(classes, ends_word, starts_word, anchor, anchor_text)


def _classify(text: str) -> int:
    if not text:
        return CONT    # an empty piece (some byte tokens decode to nothing on their own)
    if text.isspace():
        return SPACE
    leading = text[0].isspace()
    body = text.lstrip()
    ends_inside = any(c.isspace() for c in body)
    if leading:
        return SPACE_WORD_END if ends_inside else SPACE_WORD
    return CONT_END if ends_inside else CONT


@dataclass
class _Partial:
    row: int                  # row of the previous step's cache/logits this partial word extends
    prefix: int               # which prefix it belongs to
    tokens: tuple[int, ...]
    logp: float
    has_word: bool            # False while only whitespace has been produced


def _word_text(tokenizer, table: TokenTable, tokens: Sequence[int]) -> str | None:
    text = tokenizer.decode([*table.anchor, *tokens], clean_up_tokenization_spaces=False)[len(table.anchor_text):]
    match = _WORD.match(text)
    return match.group(0) if match else None


def _prefix_ids(tokenizer, prefixes: Sequence[str]) -> list[list[int]]:
    out = []
    fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    for ids in tokenizer(list(prefixes))["input_ids"]:
        out.append(ids if ids else [fallback])
    return out


@torch.inference_mode()
def next_words(
    model, tokenizer, table: TokenTable, prefixes: Sequence[str], top_k: int, width: int | None = None
) -> list[list[WordProb]]:
    """For each prefix, up to `top_k` (word, probability) pairs, most likely first.

    `width` is how many first tokens, and later partial words, are followed per prefix (default
    top_k + 2). A trailing whitespace in a prefix is dropped: the candidates carry their own
    leading whitespace.
    """
    width = width or top_k + 2
    prefixes = [p.rstrip() or p for p in prefixes]
    ids = _prefix_ids(tokenizer, prefixes)
    n, length = len(ids), max(len(x) for x in ids)
    mask = torch.zeros((n, length), dtype=torch.long)
    for i, x in enumerate(ids):   # left padding: every row's next token goes at the same position
        mask[i, length - len(x):] = 1
    prefill = _packed_prefill(model, ids, mask) if n > 1 and _can_pack(model) else None
    if prefill is None:
        prefill = _padded_prefill(model, tokenizer, ids, mask)
    cache, logp = prefill
    found: list[dict[str, float]] = [{} for _ in range(n)]

    # Step 0: the first token must start a new word (whitespace first); any other token would continue
    # the prefix's last word or end the text. The validator cuts prefixes at word boundaries, so the
    # distribution is conditioned on that: P(t1 | prefix, a new word starts) = p(t1) / P(a new word starts).
    starts = table.starts_word
    logp = logp.masked_fill(~starts, -math.inf)
    logp = logp - logp.logsumexp(-1, keepdim=True)
    first = logp.topk(min(width, int(starts.sum())), dim=-1)
    frontier: list[_Partial] = []
    for p in range(n):
        for lp, tok in zip(first.values[p].tolist(), first.indices[p].tolist(), strict=True):
            if lp == -math.inf:
                continue
            _advance(tokenizer, table, found[p], frontier, _Partial(p, p, (), 0.0, False), tok, lp)

    row_mask = mask
    for _ in range(MAX_STEPS - 1):
        frontier = _prune(frontier, found, top_k, width)
        if not frontier:
            break
        parents = torch.tensor([f.row for f in frontier])
        cache.reorder_cache(parents)
        row_mask = torch.cat([row_mask[parents], torch.ones((len(frontier), 1), dtype=torch.long)], dim=1)
        step_ids = torch.tensor([[f.tokens[-1]] for f in frontier])
        step_pos = (row_mask.sum(-1, keepdim=True) - 1)
        out = model(input_ids=step_ids, attention_mask=row_mask, position_ids=step_pos, cache=cache, use_cache=True)
        cache = out.cache
        # One softmax pass serves both the ending mass and the branches (log_softmax, then exp of it,
        # then topk each cost as much again over rows x vocabulary).
        probs = out.logits[:, -1].float().softmax(-1)
        end_mass = (probs @ table.ends_word).clamp(max=1.0).log().tolist()
        top_p, top_ids = _top(probs, min(BRANCH, width))
        top_logp, top_ids = top_p.log().tolist(), top_ids.tolist()
        survivors: list[_Partial] = []
        for row, f in enumerate(frontier):
            f.row = row
            if f.has_word:   # the word may end here: the next token starts with whitespace or ends the text
                _emit(tokenizer, table, found[f.prefix], f.tokens, f.logp + end_mass[row])
            for lp, tok in zip(top_logp[row], top_ids[row], strict=True):
                _advance(tokenizer, table, found[f.prefix], survivors, f, tok, lp)
        frontier = survivors

    results = []
    for words in found:
        ranked = sorted(words.items(), key=lambda kv: -kv[1])[:top_k]
        total = sum(p for _, p in ranked)
        if total > 1.0:   # only float rounding can get here; keep the promise that they sum to at most 1
            ranked = [(w, p / total) for w, p in ranked]
        results.append(ranked)
    return results


def _top(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """probs.topk(k) per row, in a fifth of its time on a large vocabulary: the k largest values lie
    in the k blocks of _TOP_BLOCK entries with the largest maxima, so only those are searched. (Among
    exactly equal probabilities at the k-th place, either may be the one returned, as with topk.)"""
    rows, vocab = probs.shape
    if vocab % _TOP_BLOCK or vocab < 8 * k * _TOP_BLOCK:
        return probs.topk(k, dim=-1)
    blocks = probs.view(rows, vocab // _TOP_BLOCK, _TOP_BLOCK)
    best = blocks.amax(-1).topk(k, dim=-1).indices                                   # (rows, k) block numbers
    candidates = blocks.gather(1, best[..., None].expand(-1, -1, _TOP_BLOCK)).view(rows, -1)
    values, at = candidates.topk(k, dim=-1)
    return values, best.gather(1, at // _TOP_BLOCK) * _TOP_BLOCK + at % _TOP_BLOCK


def _padded_prefill(model, tokenizer, ids: list[list[int]], mask: torch.Tensor):
    """Step 0 on a left-padded batch: (cache with one row per prefix, next-token log-probs)."""
    n, length = mask.shape
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((n, length), pad, dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, length - len(x):] = torch.tensor(x)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    # .contiguous(): the last position of a padded batch is a strided view, and the lm_head on a
    # strided 3-D input falls back to a batched matmul that copies the weight once per row.
    return out.cache, out.logits[:, -1].contiguous().float().log_softmax(-1)


def _can_pack(model) -> bool:
    """Packing several prefixes into one row needs a custom 4-D mask (SDPA reads it as given) and
    plain full-attention caches (a sliding window would be bypassed by that mask)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(config, "sliding_window", None) is not None or getattr(config, "use_sliding_window", False):
        return False
    return all(t == "full_attention" for t in (getattr(config, "layer_types", None) or ["full_attention"]))


def _packed_prefill(model, ids: list[list[int]], mask: torch.Tensor):
    """Step 0 without padding: all prefixes back to back in one row, each attending only to itself
    (block-diagonal causal mask, positions restarting at 0), then the cache is cut into one
    left-padded row per prefix, exactly as the padded forward would have left it. Padding a batch of
    prefixes of unequal length wastes up to half of step 0's compute; this wastes none.
    Returns None when the model's cache is not the plain kind this knows how to cut."""
    from transformers.cache_utils import DynamicLayer

    n, length = mask.shape
    lens = [len(x) for x in ids]
    total = sum(lens)
    seq = torch.repeat_interleave(torch.arange(n), torch.tensor(lens))           # which prefix each token is
    starts = torch.tensor([0, *lens[:-1]]).cumsum(0)
    positions = torch.arange(total) - starts[seq]
    attend = (seq[:, None] == seq[None, :]) & (positions[None, :] <= positions[:, None]) \
        & (torch.arange(total)[None, :] <= torch.arange(total)[:, None])
    last = starts + torch.tensor(lens) - 1
    out = model(input_ids=torch.tensor([[t for x in ids for t in x]]), attention_mask=attend[None, None],
                position_ids=positions[None], use_cache=True, logits_to_keep=last)
    cache = out.cache
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    # Row i of the padded cache holds prefix i's tokens at its last lens[i] slots; the padding slots
    # (masked out by `mask`) take any token (here the packed row's first).
    gather = (mask.cumsum(-1) - 1).clamp(min=0) + starts[:, None]
    gather = gather.masked_fill(mask == 0, 0).reshape(-1)
    for layer in layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)                                  # (1, heads, total, dim)
            heads, dim = t.shape[1], t.shape[-1]
            cut = t[0].index_select(1, gather).view(heads, n, length, dim).transpose(0, 1).contiguous()
            setattr(layer, name, cut)
    return cache, out.logits[0].float().log_softmax(-1)


def _advance(tokenizer, table: TokenTable, found: dict[str, float], frontier: list[_Partial],
             f: _Partial, tok: int, lp: float) -> None:
    """Apply token `tok` (log-prob `lp`) to partial word `f`: finish a word, extend it, or drop it."""
    kind = table.classes[tok]
    logp = f.logp + lp
    if kind == SPECIAL:
        return   # ends the text: a word in progress got its ending mass in end_mass
    if f.has_word and kind in (SPACE, SPACE_WORD, SPACE_WORD_END):
        return   # starts the word after this one: also counted in end_mass
    if kind in (SPACE_WORD_END, CONT_END):
        _emit(tokenizer, table, found, (*f.tokens, tok), logp)   # the word ends inside this token
        return
    if not f.tokens and kind == CONT:
        return   # the prefix's last word goes on: not a new word
    has_word = f.has_word or kind != SPACE
    frontier.append(_Partial(f.row, f.prefix, (*f.tokens, tok), logp, has_word))


def _emit(tokenizer, table: TokenTable, found: dict[str, float], tokens: Sequence[int], logp: float) -> None:
    if logp == -math.inf:
        return
    word = _word_text(tokenizer, table, tokens)
    if word is not None:
        found[word] = found.get(word, 0.0) + math.exp(logp)


def _prune(frontier: list[_Partial], found: list[dict[str, float]], top_k: int, width: int) -> list[_Partial]:
    """Keep, per prefix, the `width` likeliest partial words that can still beat the k-th finished word."""
    by_prefix: dict[int, list[_Partial]] = {}
    for f in frontier:
        by_prefix.setdefault(f.prefix, []).append(f)
    kept = []
    for p, partials in by_prefix.items():
        probs = sorted(found[p].values(), reverse=True)
        floor = math.log(max(probs[top_k - 1], MIN_PROB)) if len(probs) >= top_k else math.log(MIN_PROB)
        partials.sort(key=lambda f: -f.logp)
        kept.extend(f for f in partials[:width] if f.logp > floor)
    return kept
