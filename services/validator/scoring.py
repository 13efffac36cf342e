"""Pure scores of one miner's answers to one round: a `score` in [0, 1] (higher is better, 0 for a
miner that does no work) and the task's raw metric, plus the per-round normalisation into weights.

Each score subtracts what doing nothing earns, so the weights a round hands out go to real work:
  next-token   score = 1e-4 (e^g - 1) / (1 - 1e-4), g = (an empty answer's mean loss) - (mean loss),
               clipped at 0, loss = -log p(true next word) where p is the answer's probability of the
               true word: its listed probability, or for a
               word it did not list, the mass it left unlisted (1 - the listed sum) spread over the
               unlisted words by the validator's own unigram model (background.py). exp(-mean loss)
               is the geometric mean probability given to the true words (1 / word perplexity). The
               log score of a whole distribution is strictly proper: a miner's expected score is
               highest when its listed probabilities and its leftover mass are its real beliefs, so
               rescaling its top-k to sum to 1 (leaving nothing for other words), sharpening or
               flattening them all lose. Before this rule a missing word cost a flat 1e-4, which paid
               overconfidence. A true word given no mass at all costs 27.6 nats (p floored at 1e-12);
               a noise or " " miner scores 0, and so does an empty answer, whose loss (all its mass
               on the validator's background) is the zero: the background is the validator's
               knowledge, not the miner's work. One nat less loss is e (2.72) times the score.
  translation  score = (BLEU - zero) / (100 - zero), clipped at 0, zero = the larger of the BLEU of echoing
               the source and the miner's own BLEU against the round's references shifted out of
               line. An untranslated source shares names, numbers and punctuation with the reference
               and gets a few BLEU points; an answer that ignores its source (one fixed sentence,
               fluent boilerplate of the domain) matches the wrong references as well as the right
               ones, and beat echo in 27% of 6-sentence rounds of gettext messages. Neither may turn
               into weight. The metric stays sacreBLEU's corpus BLEU.
  embedding    score = (accuracy - 1/pool) / (1 - 1/pool), clipped at 0: random vectors find their
               passage by chance 1/pool of the time. A query counts only if its own passage is
               strictly nearest, so a constant vector (every similarity tied) scores 0, not chance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import sacrebleu

from services.validator.background import UNIFORM, Background
from services.validator.sampling import RetrievalRound, TranslationItem

FLOOR_PROB = 1e-4
FLOOR_LOSS = -math.log(FLOOR_PROB)   # 9.21 nats: the score's zero; a round's mean loss past it earns 0
MIN_PROB = 1e-12                     # a true word given no mass at all (a certain answer, wrong)
MAX_LOSS = -math.log(MIN_PROB)       # 27.6 nats: that item's loss; also a malformed answer's, no answer's
BLEU_TOKENIZE = "13a"                # sacreBLEU's default (WMT's mteval-v13a): comparable with published BLEU


@dataclass(frozen=True, slots=True)
class RoundScore:
    score: float    # in [0, 1]; what the round normalises into weights
    metric: float   # mean word loss in nats | corpus BLEU 0-100 | retrieval accuracy 0-1
    items: int      # the round's items
    zero: float = 0.0   # next-token: the mean loss an empty answer earns on these items (the score's zero)


# Next word ---------------------------------------------------------------------------------------

def true_word_probability(candidates: object, target: str, *, max_candidates: int | None = None,
                          background: Background = UNIFORM) -> float | None:
    """The probability the answer gives exactly `target`; None if it is malformed (not (str, prob)
    pairs, NaN, negative, too many).

    The answer is a whole distribution: its listed words, scaled down to sum to 1 if they sum past
    it, and the mass it left, 1 - their sum, for every word it did not list, spread over those by the
    validator's background unigram model. So a listed target has its listed probability, an
    unlisted one residual * b(target) / (1 - b(the listed words)). Only an exact match counts,
    leading whitespace included: " " or " t" earn nothing when the true word is " the".
    """
    if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
        return None
    if max_candidates is not None and len(candidates) > max_candidates:
        return None
    listed: dict[str, float] = {}
    for pair in candidates:
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            return None
        word, prob = pair
        if not isinstance(word, str) or isinstance(prob, bool) or not isinstance(prob, Real):
            return None
        prob = float(prob)
        if not math.isfinite(prob) or prob < 0:
            return None
        listed[word] = listed.get(word, 0.0) + prob
    total = math.fsum(listed.values())
    scale = 1.0 / total if total > 1.0 else 1.0
    if target in listed:
        return min(1.0, scale * listed[target])
    residual = max(0.0, 1.0 - scale * total)
    others = max(MIN_PROB, 1.0 - math.fsum(background.prob(w) for w in listed))
    return min(1.0, residual * background.prob(target) / others)


def word_loss(candidates: object, target: str, *, max_candidates: int | None = None,
              background: Background = UNIFORM) -> float:
    """-log p(true word) in nats, p at least MIN_PROB; a malformed answer is certain and wrong."""
    p = true_word_probability(candidates, target, max_candidates=max_candidates, background=background)
    return MAX_LOSS if p is None else -math.log(max(p, MIN_PROB))


def score_next_token(answers: object, targets: Sequence[str], *, max_candidates: int | None = None,
                     background: Background = UNIFORM) -> RoundScore:
    """Mean word loss over the round (an answer list of the wrong length: MAX_LOSS on all), and its
    score: 0 for the loss an empty answer earns (all its mass left to the validator's background,
    which is the validator's own knowledge, not the miner's work) or worse, and e^(nats below that)
    above it: score_of_level(zero - mean loss)."""
    n = len(targets)
    zero = math.fsum(word_loss([], t, background=background) for t in targets) / n if n else FLOOR_LOSS
    if n == 0:
        return RoundScore(0.0, MAX_LOSS, 0, zero)
    if isinstance(answers, str | bytes) or not isinstance(answers, Sequence) or len(answers) != n:
        return RoundScore(0.0, MAX_LOSS, n, zero)
    losses = [word_loss(a, t, max_candidates=max_candidates, background=background)
              for a, t in zip(answers, targets, strict=True)]
    mean_loss = math.fsum(losses) / n
    return RoundScore(score_of_level("next-token", zero - mean_loss), mean_loss, n, zero)


# Translation -------------------------------------------------------------------------------------

def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = BLEU_TOKENIZE) -> float:
    """sacreBLEU corpus BLEU (0-100) of hypotheses against one reference each."""
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def echo_bleu(items: Sequence[TranslationItem], *, tokenize: str = BLEU_TOKENIZE) -> float:
    """What a miner that returns the English source unchanged earns: the round's zero point."""
    return corpus_bleu([i.source for i in items], [i.reference for i in items], tokenize=tokenize)


UNPAIRED_SHIFTS = 4   # misalignments averaged: more only steadies the zero of a real model a little


def unpaired_bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = BLEU_TOKENIZE) -> float:
    """Mean corpus BLEU of the hypotheses against the references rotated by up to UNPAIRED_SHIFTS
    evenly spaced offsets (0 for fewer than 2): what the answers earn without fitting their sources.
    For identical hypotheses (a fixed sentence) every rotation gives exactly the aligned BLEU."""
    n = len(references)
    if n < 2:
        return 0.0
    shifts = sorted({1 + k * (n - 1) // UNPAIRED_SHIFTS for k in range(min(UNPAIRED_SHIFTS, n - 1))})
    return math.fsum(corpus_bleu(hypotheses, [*references[s:], *references[:s]], tokenize=tokenize)
                     for s in shifts) / len(shifts)


def score_translation(hypotheses: object, items: Sequence[TranslationItem], *, tokenize: str = BLEU_TOKENIZE,
                      baseline: float | None = None) -> RoundScore:
    """Corpus BLEU against the human references, scored above the larger of echo's BLEU (`baseline`,
    echo_bleu(items), computed once per round by a caller that scores many miners) and the answers'
    own BLEU out of line (unpaired_bleu). A non-string hypothesis counts as empty."""
    n = len(items)
    if n == 0 or isinstance(hypotheses, str | bytes) or not isinstance(hypotheses, Sequence) or len(hypotheses) != n:
        return RoundScore(0.0, 0.0, n)
    hyps = [h if isinstance(h, str) else "" for h in hypotheses]
    references = [i.reference for i in items]
    bleu = corpus_bleu(hyps, references, tokenize=tokenize)
    echo = echo_bleu(items, tokenize=tokenize) if baseline is None else baseline
    zero = max(echo, unpaired_bleu(hyps, references, tokenize=tokenize))
    score = max(0.0, (bleu - zero) / (100.0 - zero)) if zero < 100.0 else 0.0
    return RoundScore(min(1.0, score), bleu, n)


# Embedding ---------------------------------------------------------------------------------------

def _vectors(value: object, rows: int, dim: int | None) -> np.ndarray | None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None   # ragged rows or non-numbers
    if array.ndim != 2 or array.shape[0] != rows or array.shape[1] == 0:
        return None
    if (dim is not None and array.shape[1] != dim) or not np.isfinite(array).all():
        return None
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        return None   # a zero vector has no direction to compare
    return array / norms


def retrieval_hits(round_: RetrievalRound, query_vectors: object, passage_vectors: object, *,
                   dim: int | None = None) -> np.ndarray | None:
    """Per query: is its own passage strictly the most similar (cosine)? None if the vectors are
    malformed: not finite, a zero vector, or not one `dim`-long vector per text."""
    q = _vectors(query_vectors, len(round_.queries), dim)
    p = _vectors(passage_vectors, len(round_.passages), dim)
    if q is None or p is None or q.shape[1] != p.shape[1]:
        return None
    similarity = q @ p.T
    gold = np.asarray(round_.gold)
    own = similarity[np.arange(len(gold)), gold]
    similarity[np.arange(len(gold)), gold] = -np.inf
    return own > similarity.max(axis=1)   # strict: a tie is a miss


def score_retrieval(round_: RetrievalRound, query_vectors: object, passage_vectors: object, *,
                    dim: int | None = None) -> RoundScore:
    """Retrieval accuracy, and the score above chance (1 / pool size)."""
    n = len(round_.queries)
    hits = retrieval_hits(round_, query_vectors, passage_vectors, dim=dim)
    if hits is None or n == 0:
        return RoundScore(0.0, 0.0, n)
    accuracy = float(hits.mean())
    chance = 1.0 / len(round_.passages)
    return RoundScore(max(0.0, (accuracy - chance) / (1.0 - chance)) if chance < 1 else 0.0, accuracy, n)


# Rounds -> the moving average -> weights ----------------------------------------------------------

def round_level(task: str, score: RoundScore) -> float:
    """What the validator's moving average keeps of a round: a quantity whose mean over rounds is
    the miner's worth. For next-token that is the round's gain in nats over an empty answer (its zero
    - mean loss, >= 0), not its score: the score is exp(-mean loss) of a few items, so one word more or
    less found in a round moves it by e^(9.2 / items), and an average of such scores (squared, too)
    is ruled by the luckiest rounds. Averaging the loss and taking exp once, at weights
    (score_of_level), ranks two models by their mean loss, which is what held-out loss means. For
    BLEU and retrieval the score is already linear in the work done, so it is kept as it is."""
    if task == "next-token":
        return max(0.0, score.zero - score.metric) if score.items else 0.0
    return score.score


def score_of_level(task: str, level: float) -> float:
    """The score (0-1) of an averaged level: for next-token 1e-4 (e^level - 1) / (1 - 1e-4), so one
    nat less loss is e times the score (with the uniform background, whose empty answer loses 9.21
    nats, this is the geometric mean probability above 1e-4); else the level itself."""
    if not (isinstance(level, Real) and math.isfinite(level) and level > 0):
        return 0.0
    if task == "next-token":
        return min(1.0, FLOOR_PROB * math.expm1(level) / (1.0 - FLOOR_PROB))
    return min(1.0, float(level))


def powered_score(score: object, power: float = 1.0) -> float:
    """score ** power; NaN, negatives and non-numbers count as 0."""
    if not power > 0:
        raise ValueError(f"power {power} must be positive")
    return float(score) ** power if isinstance(score, Real) and math.isfinite(score) and score > 0 else 0.0


def normalize_scores(scores: Mapping[int, float], power: float = 1.0) -> dict[int, float]:
    """uid -> share of the round: score ** power over the sum of those (NaN and negatives count as 0);
    a round in which nobody scored stays all zero rather than spreading weight evenly over failures.

    `power` > 1 concentrates the round on the best: at 2, a next-token miner one nat of loss behind
    gets e^-2 (14%) of the leader's share instead of e^-1, and an adversary four nats behind (echo)
    e^-8 instead of e^-4 (1.8%): next to nothing, as it should be."""
    clean = {uid: powered_score(s, power) for uid, s in scores.items()}
    total = math.fsum(clean.values())
    if total <= 0.0:
        return dict.fromkeys(clean, 0.0)
    return {uid: s / total for uid, s in clean.items()}
