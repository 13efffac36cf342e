"""Held-out data: the offline build from this machine's files, its cache and provenance, the JSONL and
Hugging Face sources, and the seeded per-round sampling."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import time
import types
from pathlib import Path

import pytest

from services.common.errors import NotFound
from services.validator import catalogs, prose
from services.validator.datasets import DataSource, load_task_data
from services.validator.items import DataError, PairItem, ProseItem, RetrievalItem, Task, doc_id
from services.validator.offline import NOTE as OFFLINE_NOTE
from services.validator.sampling import (
    MIN_PREFIX_WORDS,
    cut_at_word,
    round_rng,
    sample_next_token,
    sample_retrieval,
    sample_translation,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agora-data")


@pytest.fixture(scope="module")
def offline(cache: Path) -> dict:
    """The three offline sets, built once for this module (about 4 s on the reference machine)."""
    return {task: load_task_data(task, cache_dir=cache) for task in Task}


# Offline build -----------------------------------------------------------------------------------

def test_offline_counts_are_in_the_ranges_this_machine_gives(offline: dict) -> None:
    # DATA.md: ~17,700 en->fr, ~15,000 en->de, ~16,300 en->es messages of 5+ words; the
    # sentence filter keeps about two thirds of them (about 11,200 / 10,000 / 10,900 here).
    pairs = offline[Task.TRANSLATION].held_out + offline[Task.TRANSLATION].public
    for lang in ("fr", "de", "es"):
        assert 5_000 <= sum(p.lang == lang for p in pairs) <= 30_000, lang
    prose_items = offline[Task.NEXT_TOKEN].held_out + offline[Task.NEXT_TOKEN].public
    assert 800 <= len(prose_items) <= 10_000          # ~1,570 here
    retrieval = offline[Task.EMBEDDING].held_out + offline[Task.EMBEDDING].public
    assert 1_000 <= len(retrieval) <= 20_000          # ~3,300 here
    for data in offline.values():
        total = data.provenance.count
        assert 0.4 * total <= len(data.held_out) <= 0.6 * total


def test_offline_items_are_clean(offline: dict) -> None:
    for pair in offline[Task.TRANSLATION].held_out:
        assert len(pair.source.split()) >= 5
        assert not catalogs.has_placeholder(pair.source) and not catalogs.has_placeholder(pair.reference)
        assert pair.source != pair.reference and "\n" not in pair.source + pair.reference
    for item in offline[Task.NEXT_TOKEN].held_out:
        assert len(item.text.split()) >= 30 and item.lang == "en"
        assert ">>>" not in item.text and "  " not in item.text
    for item in offline[Task.EMBEDDING].held_out:
        assert item.query not in item.passage and item.group and item.doc


def test_provenance_records_source_seed_count_and_sha256(offline: dict, cache: Path) -> None:
    data = offline[Task.TRANSLATION]
    meta = json.loads((data.path.parent / "translation.provenance.json").read_text())
    assert meta["sha256"] == hashlib.sha256(data.path.read_bytes()).hexdigest()
    assert meta["count"] == len(data.held_out) + len(data.public)
    assert meta["held_out"] == len(data.held_out)
    assert meta["seed"] == 0 and meta["source"].startswith("offline:")
    assert meta["note"] == OFFLINE_NOTE and meta["note"].startswith("public")
    assert meta["built_at"] and data.path.parent.parent == cache


def test_second_load_reads_the_cache(offline: dict, cache: Path) -> None:
    start = time.perf_counter()
    again = load_task_data(Task.EMBEDDING, cache_dir=cache)
    assert time.perf_counter() - start < 1.0
    assert again.provenance == offline[Task.EMBEDDING].provenance
    assert again.held_out == offline[Task.EMBEDDING].held_out


def test_rebuild_is_idempotent_and_repairs_a_damaged_file(offline: dict, cache: Path) -> None:
    data = offline[Task.TRANSLATION]
    before = data.path.read_bytes()
    data.path.write_text("damaged\n")
    repaired = load_task_data(Task.TRANSLATION, cache_dir=cache)   # sha256 mismatch: rebuilt
    assert data.path.read_bytes() == before
    assert repaired.held_out == data.held_out


def test_split_depends_on_the_seed_and_keeps_a_paragraph_on_one_side(offline: dict, cache: Path) -> None:
    other = load_task_data(Task.NEXT_TOKEN, seed=1, cache_dir=cache)
    assert set(other.held_out) != set(offline[Task.NEXT_TOKEN].held_out)
    held_docs = {doc_id(p.text) for p in offline[Task.NEXT_TOKEN].held_out}
    public_docs = {doc_id(p.text) for p in offline[Task.NEXT_TOKEN].public}
    for item in offline[Task.EMBEDDING].held_out:
        assert item.doc not in public_docs
    assert any(item.doc in held_docs for item in offline[Task.EMBEDDING].held_out)


def test_translated_help_texts_can_join_the_prose(cache: Path) -> None:
    data = load_task_data(Task.NEXT_TOKEN, "offline:en,fr", cache_dir=cache)
    langs = {p.lang for p in data.held_out + data.public}
    assert langs == {"en", "fr"}


# gettext catalogs and prose cleaning --------------------------------------------------------------

def _write_mo(path: Path, entries: dict[str, str], charset: str = "UTF-8") -> None:
    """A compiled catalog as msgfmt writes it (little-endian, sorted ids, no hash table)."""
    entries = {"": f"Content-Type: text/plain; charset={charset}\n", **entries}
    keys = sorted(entries)
    ids = [k.encode(charset) for k in keys]
    strs = [entries[k].encode(charset) for k in keys]
    n = len(keys)
    start = 28 + 16 * n
    offsets, blob = [], b""
    for data in ids + strs:
        offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *o) for o in offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)


def test_catalog_pairs_skip_templates_plurals_options_and_names(tmp_path: Path) -> None:
    _write_mo(tmp_path / "fr" / "LC_MESSAGES" / "demo.mo", {
        "The file could not be opened for reading.": "Le fichier n'a pas pu être ouvert en lecture.",
        "cannot open file %s for reading now": "impossible d'ouvrir le fichier %s en lecture",
        "could not open {0} for reading now": "impossible d'ouvrir {0} en lecture",
        "could not open %(name)s for reading": "impossible d'ouvrir %(name)s en lecture",
        "one file was removed from the disk\0%d files were removed": "un fichier supprimé\0%d fichiers",
        "  -v, --verbose     explain what is being done": "  -v, --verbose     expliquer ce qui est fait",
        "Hong Kong Special Administrative Region of China": "Région administrative spéciale de Hong Kong",
        "Too short to keep": "Trop court",
        "menu\x04Open the selected file in a new window.": "Ouvrir le fichier choisi dans une nouvelle fenêtre.",
        "This sentence was left untranslated by the team.": "This sentence was left untranslated by the team.",
    })
    pairs = list(catalogs.translation_pairs("fr", tmp_path))
    assert sorted((s, r) for s, r, _ in pairs) == [
        ("Open the selected file in a new window.", "Ouvrir le fichier choisi dans une nouvelle fenêtre."),
        ("The file could not be opened for reading.", "Le fichier n'a pas pu être ouvert en lecture."),
    ]


def test_catalog_in_a_legacy_charset_is_decoded(tmp_path: Path) -> None:
    _write_mo(tmp_path / "de" / "LC_MESSAGES" / "old.mo",
              {"The device is not ready for use yet.": "Das Gerät ist noch nicht einsatzbereit."}, "ISO-8859-1")
    assert [r for _, r, _ in catalogs.translation_pairs("de", tmp_path)] == ["Das Gerät ist noch nicht einsatzbereit."]


def test_clean_paragraph_keeps_prose_and_drops_code_and_lists() -> None:
    text = ("Return a new list containing all items from the iterable in ascending order. A custom key "
            "function can be supplied to customize the sort order, and the reverse flag can be set to "
            "request the result in descending order.")
    assert prose.clean_paragraph(text) == text
    assert prose.clean_paragraph(text.replace("A custom", "Use ``sorted(x)``. A custom")) is not None
    assert prose.clean_paragraph(">>> sorted([3, 1, 2])\n" + text) is None
    assert prose.clean_paragraph("- " + text) is None
    assert prose.clean_paragraph(text[:60] + "\n        " + text[60:]) is None   # ragged indentation: code
    assert prose.clean_paragraph("Too short to be a paragraph.") is None


def test_sentences_do_not_split_after_abbreviations() -> None:
    text = 'Use a list, e.g. the result of split(). Then sort it. "Quoted" sentences count too.'
    assert prose.split_sentences(text) == ["Use a list, e.g. the result of split().", "Then sort it.",
                                           '"Quoted" sentences count too.']


# JSONL source ------------------------------------------------------------------------------------

def _jsonl(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_file_loads_all_items_as_held_out(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "pairs.jsonl",
                  {"source": "Open the file.", "reference": "Ouvrez le fichier.", "lang": "fr"},
                  "",
                  {"source": "Close the file.", "reference": "Schließen Sie die Datei.", "lang": "de",
                   "split": "public"})
    data = load_task_data(Task.TRANSLATION, f"jsonl:{path}")
    assert data.held_out == (PairItem("Open the file.", "Ouvrez le fichier.", "fr"),)
    assert data.public == (PairItem("Close the file.", "Schließen Sie die Datei.", "de"),)
    assert data.provenance.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data.provenance.count == 2 and data.provenance.source == f"jsonl:{path.resolve()}"


def test_jsonl_schema_per_task(tmp_path: Path) -> None:
    prose_file = _jsonl(tmp_path / "prose.jsonl", {"text": "Some words here."})
    assert load_task_data(Task.NEXT_TOKEN, str(prose_file)).held_out == (ProseItem("Some words here."),)
    pairs_file = _jsonl(tmp_path / "qp.jsonl", {"query": "What is it?", "passage": "It is a test."})
    assert load_task_data("embedding", str(pairs_file)).held_out == (RetrievalItem("What is it?", "It is a test."),)


@pytest.mark.parametrize(("task", "line", "message"), [
    (Task.NEXT_TOKEN, "{not json", r"bad\.jsonl:2: not valid JSON"),
    (Task.NEXT_TOKEN, '["a list"]', r"bad\.jsonl:2: expected a JSON object"),
    (Task.NEXT_TOKEN, '{"txt": "typo"}', r"bad\.jsonl:2: unknown field\(s\) \['txt'\]"),
    (Task.NEXT_TOKEN, '{"text": 5}', r"bad\.jsonl:2: field 'text' must be a string, got int"),
    (Task.NEXT_TOKEN, '{"text": "  "}', r"bad\.jsonl:2: field 'text' is empty"),
    (Task.TRANSLATION, '{"source": "a b", "reference": "c d"}', r"bad\.jsonl:2: missing field\(s\) \['lang'\]"),
    (Task.TRANSLATION, '{"source": "a", "reference": "b", "lang": "it"}', r"lang 'it' is not one of"),
    (Task.EMBEDDING, '{"query": "q", "passage": "p", "split": "train"}', r"split 'train' is not"),
    (Task.EMBEDDING, '{"query": "q"}', r"missing field\(s\) \['passage'\] .*\{\"query\": \.\.\., \"passage\""),
])
def test_jsonl_schema_errors_name_the_line_and_the_problem(tmp_path: Path, task: Task, line: str, message: str) -> None:
    good = {Task.NEXT_TOKEN: {"text": "fine"}, Task.TRANSLATION: {"source": "a", "reference": "b", "lang": "fr"},
            Task.EMBEDDING: {"query": "q", "passage": "p"}}[task]
    path = _jsonl(tmp_path / "bad.jsonl", good, line)
    with pytest.raises(DataError, match=message):
        load_task_data(task, f"jsonl:{path}")


def test_jsonl_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_task_data(Task.NEXT_TOKEN, f"jsonl:{tmp_path / 'absent.jsonl'}")
    with pytest.raises(DataError, match=r"no items .*\{\"text\": \.\.\.\}"):
        load_task_data(Task.NEXT_TOKEN, f"jsonl:{_jsonl(tmp_path / 'empty.jsonl', '')}")


def test_source_strings_parse() -> None:
    assert DataSource.parse("offline") == DataSource("offline")
    assert DataSource.parse("offline:en,fr").prose_langs == ("en", "fr")
    assert DataSource.parse("/data/x.jsonl") == DataSource("jsonl", "/data/x.jsonl")
    assert DataSource.parse("hf:org/set:cfg") == DataSource("hf", "org/set", hf_config="cfg")
    with pytest.raises(DataError, match="use 'offline'"):
        DataSource.parse("s3://bucket/data")


# Hugging Face source -----------------------------------------------------------------------------

def test_hub_source_without_datasets_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)   # makes `import datasets` fail
    with pytest.raises(NotFound, match="pip install datasets"):
        load_task_data(Task.TRANSLATION, "hf:org/pairs", cache_dir=tmp_path)


def test_hub_source_maps_columns_and_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def load_dataset(path: str, name: str | None = None, split: str | None = None) -> list[dict]:
        calls.append((path, name, split))
        return [{"translation": {"en": "Open the file.", "fr": "Ouvrez le fichier."}},
                {"translation": {"en": "Close it.", "fr": "Fermez-le."}}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    source = DataSource.hub("org/pairs", hf_config="en-fr", columns={"source": "translation.en",
                                                                      "reference": "translation.fr"}, lang="fr")
    data = load_task_data(Task.TRANSLATION, source, cache_dir=tmp_path)
    assert calls == [("org/pairs", "en-fr", "test")]
    assert data.held_out == (PairItem("Open the file.", "Ouvrez le fichier.", "fr"),
                             PairItem("Close it.", "Fermez-le.", "fr"))
    assert data.provenance.source == "hf:org/pairs:en-fr:test"
    assert load_task_data(Task.TRANSLATION, source, cache_dir=tmp_path).held_out == data.held_out
    assert len(calls) == 1   # the second load read the cache


# Sampling ----------------------------------------------------------------------------------------

def test_sampling_is_deterministic_per_seed_and_fresh_per_round(offline: dict) -> None:
    prose_items = offline[Task.NEXT_TOKEN].held_out
    first = sample_next_token(prose_items, round_rng(7, 3, Task.NEXT_TOKEN), 16)
    assert first == sample_next_token(prose_items, round_rng(7, 3, Task.NEXT_TOKEN), 16)
    assert first != sample_next_token(prose_items, round_rng(7, 4, Task.NEXT_TOKEN), 16)
    assert first != sample_next_token(prose_items, round_rng(8, 3, Task.NEXT_TOKEN), 16)
    pairs = offline[Task.TRANSLATION].held_out
    assert (sample_translation(pairs, round_rng(7, 3, "translation"), 8)
            == sample_translation(pairs, round_rng(7, 3, "translation"), 8))
    assert (sample_translation(pairs, round_rng(7, 3, "translation"), 8)
            != sample_translation(pairs, round_rng(7, 4, "translation"), 8))
    retrieval = offline[Task.EMBEDDING].held_out
    assert (sample_retrieval(retrieval, round_rng(7, 3, "embedding"))
            == sample_retrieval(retrieval, round_rng(7, 3, "embedding")))
    assert (sample_retrieval(retrieval, round_rng(7, 3, "embedding"))
            != sample_retrieval(retrieval, round_rng(7, 4, "embedding")))


def test_next_word_cut_is_a_whole_word_with_its_leading_space(offline: dict) -> None:
    texts = {p.text for p in offline[Task.NEXT_TOKEN].held_out}
    for item in sample_next_token(offline[Task.NEXT_TOKEN].held_out, round_rng(1, 1, Task.NEXT_TOKEN), 64):
        assert item.target.startswith(" ") and item.target.strip() and " " not in item.target.strip()
        assert any(c.isalnum() for c in item.target)
        assert len(item.prefix.split()) >= MIN_PREFIX_WORDS and not item.prefix.endswith(" ")
        whole = next(t for t in texts if t.startswith(item.prefix + item.target))
        rest = whole[len(item.prefix + item.target):]
        assert rest == "" or rest[0].isspace()   # the word ends there: " Paris", not " Par"


def test_next_word_skips_punctuation_only_targets() -> None:
    text = "one two three four five — six"
    for round_index in range(20):
        item = cut_at_word(text, round_rng(0, round_index, Task.NEXT_TOKEN), 5)
        assert item == cut_at_word(text, round_rng(0, round_index, Task.NEXT_TOKEN), 5)
        assert item is not None and item.target == " six" and item.prefix == "one two three four five —"
    assert cut_at_word("too short to cut", round_rng(0, 0, Task.NEXT_TOKEN)) is None


def test_translation_round_is_one_language_of_held_out_pairs(offline: dict) -> None:
    held = offline[Task.TRANSLATION].held_out
    batch = sample_translation(held, round_rng(2, 9, Task.TRANSLATION), 24)
    assert len(batch) == 24 and len({i.lang for i in batch}) == 1 and len({i.source for i in batch}) == 24
    by_source = {(p.source, p.lang): p.reference for p in held}
    assert all(by_source[(i.source, i.lang)] == i.reference for i in batch)
    assert {i.lang for i in sample_translation(held, round_rng(2, 9, "translation"), 4, lang="es")} == {"es"}


def test_retrieval_round_has_gold_indices_and_hard_negatives(offline: dict) -> None:
    items = offline[Task.EMBEDDING].held_out
    by_query = {i.query: i for i in items}
    rnd = sample_retrieval(items, round_rng(3, 1, Task.EMBEDDING), queries=16, pool_size=48)
    assert len(rnd.queries) == 16 and len(rnd.passages) == 48 and len(set(rnd.passages)) == 48
    for query, gold in zip(rnd.queries, rnd.gold, strict=True):
        assert rnd.passages[gold] == by_query[query].passage
    topics = {by_query[q].group for q in rnd.queries}
    by_passage = {i.passage: i for i in items}
    negatives = [p for i, p in enumerate(rnd.passages) if i not in set(rnd.gold)]
    assert sum(by_passage[p].group in topics for p in negatives) >= len(negatives) // 2
    docs = [by_passage[p].doc for p in rnd.passages]
    assert len(set(docs)) == len(docs)   # no negative is a query's own paragraph cut another way
