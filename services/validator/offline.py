"""The built-in offline data: translation pairs from this machine's gettext catalogs, prose and
(sentence, rest of paragraph) retrieval pairs from the standard library's docstrings and licence texts.

All of it is on every miner's machine too: it serves demonstrations and tests, never real scoring.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from pathlib import Path

from services.validator import catalogs, prose
from services.validator.items import (
    TRANSLATION_LANGS,
    DataError,
    Item,
    PairItem,
    ProseItem,
    RetrievalItem,
    Task,
    doc_id,
)

SOURCE = "offline:gettext+stdlib+licences"
NOTE = ("public: demonstration only. Built from files on every Debian machine with Python, so a miner "
        "can look the answers up; a real validator must use held-out data of its own.")
_MAX_PASSAGE_WORDS = 180   # longer passages are truncated by small encoders (256-384 tokens)
_MIN_QUERY_WORDS = 6
_MIN_PASSAGE_WORDS = 12


def build(task: Task, prose_langs: Iterable[str] = ("en",)) -> list[Item]:
    """Every item of one task, in a fixed order (same files, same output)."""
    if task is Task.TRANSLATION:
        return [PairItem(src, ref, lang, domain)
                for lang in TRANSLATION_LANGS for src, ref, domain in catalogs.translation_pairs(lang)]
    if task is Task.NEXT_TOKEN:
        items: list[Item] = []
        for lang in prose_langs:
            if lang == "en":
                items += [ProseItem(p.text, "en", p.origin) for p in prose.english_paragraphs()]
            elif lang in TRANSLATION_LANGS:
                items += [ProseItem(text, lang, f"gettext:{domain}")
                          for text, domain in catalogs.translated_prose(lang)]
            else:
                raise DataError(f"prose language {lang!r} is not one of {['en', *TRANSLATION_LANGS]}")
        return items
    return retrieval_items(prose.english_paragraphs())


def retrieval_items(paragraphs: Iterable[prose.Paragraph]) -> list[Item]:
    """One (sentence, rest of its paragraph) item per usable sentence: the query is one sentence, the
    passage is the paragraph without it, so the two share a topic but not their words verbatim."""
    items: list[Item] = []
    for para in paragraphs:
        sentences = prose.split_sentences(para.text)
        if len(sentences) < 2 or len(para.text.split()) > _MAX_PASSAGE_WORDS:
            continue
        doc = doc_id(para.text)
        for i, query in enumerate(sentences):
            passage = " ".join(sentences[:i] + sentences[i + 1:])
            if len(query.split()) >= _MIN_QUERY_WORDS and len(passage.split()) >= _MIN_PASSAGE_WORDS:
                items.append(RetrievalItem(query, passage, para.group, doc))
    return items


def fingerprint(task: Task, prose_langs: tuple[str, ...]) -> str:
    """Names, sizes and times of the files a build reads; the Python version stands for its stdlib."""
    files: list[Path] = []
    if task is Task.TRANSLATION:
        langs: tuple[str, ...] = TRANSLATION_LANGS
    else:
        langs = tuple(lang for lang in prose_langs if lang != "en") if task is Task.NEXT_TOKEN else ()
        files += sorted(prose.LICENSES_DIR.glob("*"))
    for lang in langs:
        files += catalogs.catalog_files(lang)
    stats = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        stats.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return json.dumps([platform.python_version(), str(prose.stdlib_root()), prose_langs, stats])
