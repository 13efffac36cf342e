"""Scores: the whole-word next-word loss, BLEU above echo, retrieval above chance, and the per-round
normalisation. No models: answers are built to stand for a perfect, a good, a lazy and a noise miner."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.validator import catalogs
from services.validator.background import Background
from services.validator.sampling import RetrievalRound, TranslationItem
from services.validator.scoring import (
    FLOOR_LOSS,
    FLOOR_PROB,
    MAX_LOSS,
    RoundScore,
    corpus_bleu,
    echo_bleu,
    normalize_scores,
    round_level,
    score_next_token,
    score_of_level,
    score_retrieval,
    score_translation,
    true_word_probability,
    word_loss,
)

# Next word ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("candidates", [[(" ", 1.0)], [("t", 1.0)], [(" t", 1.0)], [("the", 1.0)], [(" the ", 1.0)]])
def test_only_the_exact_whole_word_counts(candidates: list) -> None:
    # each leaves no mass for other words: the true word " the" gets none
    assert word_loss(candidates, " the") == pytest.approx(MAX_LOSS)


def test_loss_is_minus_log_of_the_true_words_probability() -> None:
    assert word_loss([(" the", 0.5), (" a", 0.3)], " the") == pytest.approx(math.log(2))
    assert word_loss([(" the", 1.0)], " the") == 0.0
    assert word_loss([(" the", 1e-15)], " the") == pytest.approx(MAX_LOSS)   # floored at 1e-12


def test_unlisted_words_share_the_mass_left_by_the_background() -> None:
    background = Background.from_texts(["the cat sat on the mat", "the dog"])   # 8 words, 6 distinct
    b = {w: background.prob(w) for w in ("the", "cat", "emu")}
    assert b == {"the": pytest.approx(4 / 15), "cat": pytest.approx(2 / 15), "emu": pytest.approx(1 / 15)}
    assert background.prob(" the") == background.prob("\nthe")   # leading whitespace aside
    answer = [(" the", 0.6)]
    # 0.4 left, spread over every word but " the" in proportion to the background
    for word in ("cat", "emu"):
        got = true_word_probability(answer, " " + word, background=background)
        assert got == pytest.approx(0.4 * b[word] / (1 - b["the"]))
    assert true_word_probability([], " cat", background=background) == pytest.approx(b["cat"])   # all left
    assert true_word_probability([(" the", 1.0)], " cat", background=background) == 0.0   # nothing left
    # the same leftover, compared without a validator's texts: every unlisted word alike (1e-4)
    assert true_word_probability([(" a", 0.9)], " the") == pytest.approx(0.1 * 1e-4 / (1 - 1e-4))


def test_honest_probabilities_score_best_in_expectation() -> None:
    """Strictly proper: with the truth drawn from the miner's own beliefs, the expected loss of its
    honest answer is below that of the same top words renormalised, sharpened or flattened."""
    background = Background.from_texts(["a b c d e f g h " * 3])
    belief = {" a": 0.4, " b": 0.2, " c": 0.1, " d": 0.1, " e": 0.1, " f": 0.05, " g": 0.05}
    top = [(" a", 0.4), (" b", 0.2), (" c", 0.1)]   # what it lists: 0.7, with 0.3 left for the rest

    def expected(answer) -> float:
        return sum(p * word_loss(answer, w, background=background) for w, p in belief.items())

    listed = sum(p for _, p in top)
    renormalised = [(w, p / listed) for w, p in top]
    sharpened = [(w, p * p / sum(q * q for _, q in top) * listed) for w, p in top]
    flattened = [(w, p ** 0.5 / sum(q ** 0.5 for _, q in top) * listed) for w, p in top]
    honest = expected(top)
    for other in (renormalised, sharpened, flattened, [(w, p / 2) for w, p in top]):
        assert expected(other) > honest + 0.01, other


@pytest.mark.parametrize("candidates", [
    [(" the", float("nan"))], [(" the", -0.1), (" a", 0.5)], [(" the", float("inf"))], [(7, 0.5)],
    [(" the", "0.5")], [(" the", True)], [(" the",)], " the", None, [(" the", 0.5, 1)], [" the"],
])
def test_malformed_answers_are_certain_and_wrong(candidates: object) -> None:
    assert true_word_probability(candidates, " the") is None
    assert word_loss(candidates, " the") == pytest.approx(MAX_LOSS)


def test_more_candidates_than_asked_is_malformed() -> None:
    answer = [(" the", 0.5)] + [(f" w{i}", 0.01) for i in range(10)]
    assert word_loss(answer, " the", max_candidates=11) == pytest.approx(math.log(2))
    assert word_loss(answer, " the", max_candidates=10) == pytest.approx(MAX_LOSS)


def test_next_word_score_orders_miners_and_noise_scores_zero() -> None:
    targets = [" the", " Paris", " of", " model", " and", " data"] * 5
    rng = np.random.default_rng(0)
    perfect = [[(t, 1.0)] for t in targets]
    good = [[(t, 0.3), (" x", 0.2)] for t in targets]
    weaker = [[(t, 0.1), (" x", 0.5)] if i % 2 else [(" x", 0.5)] for i, t in enumerate(targets)]
    noise = [[(f" {rng.integers(1 << 30)}", 1.0)] for _ in targets]
    space = [[(" ", 1.0)] for _ in targets]
    scores = [score_next_token(a, targets) for a in (perfect, good, weaker, noise, space)]
    assert [s.score for s in scores] == sorted((s.score for s in scores), reverse=True)
    assert scores[0].score == pytest.approx(1.0) and scores[0].metric == 0.0
    assert scores[1].metric == pytest.approx(-math.log(0.3))
    assert scores[3].score == 0.0 and scores[4].score == 0.0 and scores[3].metric == pytest.approx(MAX_LOSS)
    assert scores[1].score > 2 * scores[2].score   # a real margin, not a rounding difference


def test_wrong_number_of_answers_scores_zero() -> None:
    targets = [" the", " a"]
    assert score_next_token([[(" the", 1.0)]], targets).score == 0.0
    assert score_next_token("nonsense", targets).metric == pytest.approx(MAX_LOSS)
    assert score_next_token([], []).score == 0.0


# Translation -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def french_items() -> list[TranslationItem]:
    pairs = list(catalogs.translation_pairs("fr"))
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(pairs), size=min(64, len(pairs)), replace=False)
    return [TranslationItem(pairs[i][0], pairs[i][1], "fr") for i in chosen]


def test_bleu_ranks_reference_over_corrupted_over_echo_over_noise(french_items: list[TranslationItem]) -> None:
    assert len(french_items) == 64
    rng = np.random.default_rng(1)
    references = [i.reference for i in french_items]

    def corrupt(text: str) -> str:   # one word in five replaced
        words = text.split()
        for j in rng.choice(len(words), size=max(1, len(words) // 5), replace=False):
            words[j] = "zz"
        return " ".join(words)

    def noise(text: str) -> str:
        return " ".join("".join(rng.choice(list("abcdefghij"), 6)) for _ in text.split())

    runs = {
        "reference": references,
        "corrupted": [corrupt(r) for r in references],
        "echo": [i.source for i in french_items],
        "noise": [noise(r) for r in references],
    }
    scores = {name: score_translation(h, french_items) for name, h in runs.items()}
    bleu = [scores[n].metric for n in runs]
    assert bleu == sorted(bleu, reverse=True) and len(set(bleu)) == 4, bleu
    assert scores["reference"].score == pytest.approx(1.0)
    assert 0.3 < scores["corrupted"].score < 1.0
    assert scores["echo"].metric > 0 and scores["echo"].score == 0.0   # echoing earns nothing
    assert scores["noise"].score == 0.0
    assert scores["echo"].metric == pytest.approx(echo_bleu(french_items))


def test_fixed_sentence_and_malformed_translations_score_zero(french_items: list[TranslationItem]) -> None:
    n = len(french_items)
    assert score_translation(["Le fichier est introuvable."] * n, french_items).score == 0.0
    assert score_translation(["x"] * (n - 1), french_items).score == 0.0
    assert score_translation("one string", french_items).score == 0.0
    partial = [i.reference if k % 2 else None for k, i in enumerate(french_items)]
    assert 0.0 < score_translation(partial, french_items).score < 1.0   # a non-string counts as empty
    baseline = echo_bleu(french_items)
    assert (score_translation([i.reference for i in french_items], french_items, baseline=baseline).score
            == pytest.approx(1.0))


def test_a_fixed_sentence_scores_zero_even_in_rounds_where_it_beats_echo(french_items: list[TranslationItem]) -> None:
    # a validator's round is a few sentences: there, a typical message of the domain sometimes
    # shares more n-grams with the references than the untranslated sources do
    fixed = "Le fichier demandé n'a pas pu être ouvert."
    rng = np.random.default_rng(2)
    beat_echo = 0
    for _ in range(100):
        items = [french_items[i] for i in rng.choice(len(french_items), size=6, replace=False)]
        beat_echo += corpus_bleu([fixed] * 6, [i.reference for i in items]) > echo_bleu(items)
        assert score_translation([fixed] * 6, items).score == 0.0
        assert score_translation([i.reference for i in items], items).score == pytest.approx(1.0)
    assert beat_echo >= 5, beat_echo   # the case this guards against does occur


# Embedding ---------------------------------------------------------------------------------------

def _round(queries: int, pool: int, rng: np.random.Generator) -> RetrievalRound:
    gold = tuple(int(g) for g in rng.choice(pool, size=queries, replace=False))
    return RetrievalRound(tuple(f"q{i}" for i in range(queries)), tuple(f"p{i}" for i in range(pool)), gold)


def test_random_vectors_score_chance_and_zero_above_it() -> None:
    rng = np.random.default_rng(0)
    pool, accuracies, scores = 32, [], []
    for _ in range(300):
        rnd = _round(16, pool, rng)
        result = score_retrieval(rnd, rng.normal(size=(16, 64)), rng.normal(size=(pool, 64)))
        accuracies.append(result.metric)
        scores.append(result.score)
    assert np.mean(accuracies) == pytest.approx(1 / pool, rel=0.25)
    assert np.mean(scores) < 0.02


def test_oracle_vectors_score_one() -> None:
    rng = np.random.default_rng(1)
    rnd = _round(16, 48, rng)
    passages = rng.normal(size=(48, 32))
    queries = passages[list(rnd.gold)] + 0.01 * rng.normal(size=(16, 32))
    result = score_retrieval(rnd, queries, passages, dim=32)
    assert result.metric == 1.0 and result.score == 1.0


def test_constant_vectors_score_zero_not_chance() -> None:
    rnd = _round(16, 48, np.random.default_rng(2))
    same = np.ones((16, 8)), np.ones((48, 8))
    assert score_retrieval(rnd, *same).metric == 0.0
    passages = np.random.default_rng(3).normal(size=(48, 8))
    assert score_retrieval(rnd, np.ones((16, 8)), np.tile(passages[:1], (48, 1))).metric == 0.0


@pytest.mark.parametrize("broken", ["nan", "inf", "zero", "short_row", "dim", "count", "ragged", "text"])
def test_malformed_vectors_score_zero(broken: str) -> None:
    rng = np.random.default_rng(4)
    rnd = _round(4, 8, rng)
    passages = rng.normal(size=(8, 16))
    queries: object = passages[list(rnd.gold)].copy()
    assert score_retrieval(rnd, queries, passages, dim=16).score == 1.0
    if broken == "nan":
        queries[0, 0] = np.nan
    elif broken == "inf":
        passages[3, 2] = np.inf
    elif broken == "zero":
        queries[1] = 0.0
    elif broken == "short_row":
        passages = passages[:, :8]
    elif broken == "dim":
        queries, passages = queries[:, :8], passages[:, :8]
    elif broken == "count":
        queries = queries[:3]
    elif broken == "ragged":
        queries = [list(row) for row in queries]
        queries[0] = queries[0][:5]
    else:
        queries = [["a"] * 16] * 4
    assert score_retrieval(rnd, queries, passages, dim=16).score == 0.0


# Normalisation -----------------------------------------------------------------------------------

def test_normalized_scores_sum_to_one() -> None:
    weights = normalize_scores({1: 0.2, 2: 0.6, 3: 0.0, 4: float("nan"), 5: -1.0})
    assert weights == pytest.approx({1: 0.25, 2: 0.75, 3: 0.0, 4: 0.0, 5: 0.0})
    assert math.fsum(weights.values()) == pytest.approx(1.0)


def test_all_zero_round_stays_zero() -> None:
    assert normalize_scores({1: 0.0, 2: 0.0}) == {1: 0.0, 2: 0.0}
    assert normalize_scores({}) == {}


def test_floor_constants() -> None:
    assert FLOOR_PROB == 1e-4
    assert pytest.approx(9.2103, abs=1e-4) == FLOOR_LOSS


def test_the_average_keeps_loss_so_weights_rank_by_mean_loss_not_by_lucky_rounds():
    rounds = [score_next_token([[(" a", p)]] * 4, [" a"] * 4) for p in (0.5, 0.01, 0.2)]
    for r in rounds:   # one round: the score of its level is its score
        assert score_of_level("next-token", round_level("next-token", r)) == pytest.approx(r.score)
    mean_level = sum(round_level("next-token", r) for r in rounds) / len(rounds)
    mean_loss = sum(r.metric for r in rounds) / len(rounds)
    assert score_of_level("next-token", mean_level) == pytest.approx(
        score_next_token([[(" a", math.exp(-mean_loss))]], [" a"]).score)
    # a miner steadily at loss 2.0 outranks one at 1.0 half the time and 3.1 the other half
    # (mean 2.05), though the mean of the latter's per-round scores is higher
    steady = score_next_token([[(" a", math.exp(-2.0))]], [" a"])
    swings = [score_next_token([[(" a", math.exp(-x))]], [" a"]) for x in (1.0, 3.1)]
    assert sum(s.score for s in swings) / 2 > steady.score
    assert round_level("next-token", steady) > sum(round_level("next-token", s) for s in swings) / 2
    # other tasks average the score itself; nothing and junk are worth 0
    bleu = RoundScore(0.4, 30.0, 8)
    assert round_level("translation", bleu) == 0.4 and score_of_level("translation", 0.4) == 0.4
    assert score_of_level("next-token", 0.0) == 0.0 and score_of_level("embedding", float("nan")) == 0.0
    assert round_level("next-token", score_next_token("junk", [" a"])) == 0.0
