"""What the validator's tasks are and what one held-out item of each looks like, and how a JSON row
describes one (the schema of a JSONL file or of a mapped hub data set):

    next-token   {"text": ...}                                     (optional "lang", "origin")
    translation  {"source": ..., "reference": ..., "lang": "fr"}   (optional "origin")
    embedding    {"query": ..., "passage": ...}                    (optional "group", "doc")

Any row may carry "split": "heldout" or "public" to override the seeded split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from pathlib import Path

from services.common.errors import InvalidRequest

TRANSLATION_LANGS = ("fr", "de", "es")
HELD_OUT, PUBLIC = "heldout", "public"


class Task(StrEnum):
    NEXT_TOKEN = "next-token"
    TRANSLATION = "translation"
    EMBEDDING = "embedding"


class DataError(InvalidRequest):
    """A data file or data set that does not match the task's schema."""


@dataclass(frozen=True, slots=True)
class ProseItem:
    """A paragraph: the validator cuts it at a random word and asks for the next word."""

    text: str
    lang: str = "en"
    origin: str = ""   # where it came from, e.g. "stdlib:email.message"; informational


@dataclass(frozen=True, slots=True)
class PairItem:
    """An English sentence and a human translation of it."""

    source: str
    reference: str
    lang: str          # the reference's language: one of TRANSLATION_LANGS
    origin: str = ""


@dataclass(frozen=True, slots=True)
class RetrievalItem:
    """A query and the passage it belongs to."""

    query: str
    passage: str
    group: str = ""    # a topic shared with good negatives (same module, same licence family); "" = none
    doc: str = ""      # items with one doc overlap (one paragraph cut several ways): never two in a round


Item = ProseItem | PairItem | RetrievalItem
ITEM_TYPES: dict[Task, type] = {Task.NEXT_TOKEN: ProseItem, Task.TRANSLATION: PairItem, Task.EMBEDDING: RetrievalItem}


def item_from_row(task: Task, row: object, where: str) -> tuple[Item, str | None]:
    """The item a JSON row describes and its split ("heldout", "public" or None), or DataError
    naming `where` (file:line) and what is wrong."""
    kind = ITEM_TYPES[task]
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object for {task}, got {type(row).__name__}")
    names = [f.name for f in fields(kind)]
    required = [f.name for f in fields(kind) if f.default is MISSING]
    unknown = sorted(set(row) - {*names, "split"})
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown} for {task}; allowed: {[*names, 'split']}")
    missing = [n for n in required if n not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing} for {task} (schema: {_schema(task)})")
    for name in names:
        if name in row and not isinstance(row[name], str):
            raise DataError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    for name in required:
        if not row[name].strip():
            raise DataError(f"{where}: field {name!r} is empty")
    if task is Task.TRANSLATION and row["lang"] not in TRANSLATION_LANGS:
        raise DataError(f"{where}: lang {row['lang']!r} is not one of {list(TRANSLATION_LANGS)}")
    split = row.get("split")
    if split is not None and split not in (HELD_OUT, PUBLIC):
        raise DataError(f"{where}: split {split!r} is not {HELD_OUT!r} or {PUBLIC!r}")
    return kind(**{n: row[n] for n in names if n in row}), split


def _schema(task: Task) -> str:
    return {
        Task.NEXT_TOKEN: '{"text": ...}',
        Task.TRANSLATION: '{"source": ..., "reference": ..., "lang": "fr"}',
        Task.EMBEDDING: '{"query": ..., "passage": ...}',
    }[task]


def read_jsonl(task: Task, path: Path) -> list[tuple[Item, str | None]]:
    """Every row of a JSONL file as (item, split), validated; blank lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        out.append(item_from_row(task, row, f"{path}:{number}"))
    if not out:
        raise DataError(f"{path}: no items (expected one JSON object per line: {_schema(task)})")
    return out


def doc_id(text: str) -> str:
    """A short stable name for a paragraph or sentence: what the split and the sampler key on."""
    return "p:" + hashlib.sha256(text.encode()).hexdigest()[:16]
