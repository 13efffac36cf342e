"""Held-out data for the validator's tasks, from one of three sources, with a seeded split.

    load_task_data(Task.TRANSLATION)                                  # built-in offline set (public!)
    load_task_data(Task.NEXT_TOKEN, "jsonl:/srv/agora/prose.jsonl")   # the operator's own file
    load_task_data(Task.EMBEDDING, DataSource.hub("org/pairs", columns={"query": "q", "passage": "p"}))

The offline default is built from what every Debian machine with Python has (gettext catalogs,
standard library docstrings, licence texts). It is PUBLIC: any miner can look the answers up, so
it serves demonstrations and tests only; a real validator must use data of its own. A built set is
written once under the cache directory as JSONL (one row per item, with its split) beside a
provenance file (source, count, seed, sha256, built_at); later loads read it back in a fraction of a second.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from services.common.cache import cache_dir as common_cache_dir
from services.common.errors import NotFound
from services.validator import offline
from services.validator.background import UNIFORM, Background
from services.validator.items import (
    HELD_OUT,
    ITEM_TYPES,
    PUBLIC,
    DataError,
    Item,
    PairItem,
    ProseItem,
    Task,
    doc_id,
    item_from_row,
    read_jsonl,
)

BUILDER_VERSION = 1      # bump when a builder's output changes: cached sets are rebuilt


@dataclass(frozen=True, slots=True)
class Provenance:
    name: str                 # the folder under <cache>/data
    task: str
    source: str               # "offline:gettext+stdlib+licences", "jsonl:/abs/path", "hf:org/name"
    count: int                # items in both splits
    held_out: int             # items in the validators' split
    seed: int                 # the split's seed
    held_out_fraction: float  # share of items the seeded split holds out (rows with their own split keep it)
    sha256: str               # of the JSONL file
    built_at: str             # UTC, ISO 8601
    fingerprint: str          # inputs and builder version: a different one means rebuild
    note: str = ""


@dataclass(frozen=True, slots=True)
class TaskData:
    task: Task
    held_out: tuple[Item, ...]   # validators only: sampled fresh each round, never shown ahead
    public: tuple[Item, ...]     # may be shown to anyone (examples, tuning)
    provenance: Provenance
    path: Path | None            # the JSONL file the items were read from
    background: Background = UNIFORM   # next-token: the word model scoring spreads unlisted mass by


@dataclass(frozen=True, slots=True)
class DataSource:
    """Where a task's items come from: "offline", a JSONL file, or a Hugging Face `datasets` path."""

    kind: str                                   # "offline" | "jsonl" | "hf"
    location: str = ""                          # file path or hub path
    hf_config: str | None = None                # the data set's configuration name, if it has several
    hf_split: str = "test"
    columns: Mapping[str, str] = field(default_factory=dict)  # schema field -> column; dots reach nested ones
    lang: str | None = None                     # hf translation sets: the reference language, if no column
    prose_langs: tuple[str, ...] = ("en",)      # offline next-token: "fr"/"de"/"es" add translated help texts

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """"offline", "offline:en,fr", "jsonl:PATH", a path ending .jsonl, "hf:PATH[:CONFIG]"."""
        kind, _, rest = text.strip().partition(":")
        if kind == "offline":
            langs = tuple(x.strip() for x in rest.split(",") if x.strip()) or ("en",)
            return cls("offline", prose_langs=langs)
        if kind == "jsonl":
            return cls("jsonl", rest)
        if kind == "hf":
            path, _, config = rest.partition(":")
            return cls("hf", path, hf_config=config or None)
        if text.strip().endswith(".jsonl"):
            return cls("jsonl", text.strip())
        raise DataError(f"data source {text!r}: use 'offline', 'jsonl:PATH' or 'hf:PATH[:CONFIG]'")

    @classmethod
    def hub(cls, path: str, **kwargs: Any) -> DataSource:
        return cls("hf", path, **kwargs)


def load_task_data(task: Task | str, source: DataSource | str = "offline", *, seed: int = 0,
                   held_out_fraction: float | None = None, cache_dir: Path | None = None,
                   rebuild: bool = False) -> TaskData:
    """The task's items, split into held-out and public by `seed`.

    `held_out_fraction` defaults to 0.5 for the offline set (the other half may serve as examples)
    and to 1.0 for a JSONL file or hub set, which are the operator's own. Offline and hub sets are
    cached under `cache_dir` (default: services.common.cache.cache_dir("data")) and rebuilt only when
    their inputs change.
    """
    task = Task(task)
    if isinstance(source, str):
        source = DataSource.parse(source)
    fraction = held_out_fraction if held_out_fraction is not None else 0.5 if source.kind == "offline" else 1.0
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"held_out_fraction {fraction} is not in [0, 1]")
    if source.kind == "jsonl":
        return _load_jsonl_source(task, Path(source.location).expanduser(), seed, fraction)
    if source.kind == "offline":
        name = f"offline-{'+'.join(source.prose_langs)}-seed{seed}"
        origin = offline.SOURCE
        inputs = offline.fingerprint(task, source.prose_langs)
    elif source.kind == "hf":
        parts = [source.location, source.hf_config or "", source.hf_split]
        name = "hf-" + re.sub(r"[^A-Za-z0-9._-]+", "--", "-".join(p for p in parts if p)) + f"-seed{seed}"
        origin = "hf:" + ":".join(p for p in parts if p)
        inputs = json.dumps([parts, dict(source.columns), source.lang], sort_keys=True)
    else:
        raise DataError(f"data source kind {source.kind!r} is not one of offline, jsonl, hf")
    fingerprint = hashlib.sha256(f"v{BUILDER_VERSION}\0{task}\0{fraction}\0{inputs}".encode()).hexdigest()
    folder = (cache_dir or common_cache_dir("data")) / name
    path, meta_path = folder / f"{task}.jsonl", folder / f"{task}.provenance.json"
    if not rebuild:
        cached = _read_cached(task, path, meta_path, fingerprint)
        if cached is not None:
            return cached
    items = offline.build(task, source.prose_langs) if source.kind == "offline" else _read_hub(task, source)
    rows = [_with_split(item, None, seed, fraction) for item in items]
    digest = _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    held = sum(r["split"] == HELD_OUT for r in rows)
    provenance = Provenance(
        name=name, task=str(task), source=origin, count=len(rows), held_out=held, seed=seed,
        held_out_fraction=fraction, sha256=digest, built_at=_now(), fingerprint=fingerprint,
        note=offline.NOTE if source.kind == "offline" else "",
    )
    _write_atomic(meta_path, json.dumps(asdict(provenance), indent=2, sort_keys=True) + "\n")
    return _task_data(task, rows, provenance, path)


# Split -------------------------------------------------------------------------------------------

def split_key(item: Item) -> str:
    """What the split hashes: a paragraph, an English sentence or a document is held out (or not)
    as a whole, so the same paragraph never sits on both sides for the next-token and embedding sets."""
    if isinstance(item, ProseItem):
        return doc_id(item.text)
    if isinstance(item, PairItem):
        return doc_id(item.source)
    return item.doc or doc_id(item.passage)


def is_held_out(key: str, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _with_split(item: Item, split: str | None, seed: int, fraction: float) -> dict:
    row = {k: v for k, v in asdict(item).items() if v != ""}   # required fields are never empty
    row["split"] = split or (HELD_OUT if is_held_out(split_key(item), seed, fraction) else PUBLIC)
    return row


def _task_data(task: Task, rows: list[dict], provenance: Provenance, path: Path | None) -> TaskData:
    kind = ITEM_TYPES[task]
    held, public = [], []
    for row in rows:
        split = row.pop("split")
        (held if split == HELD_OUT else public).append(kind(**row))
    background = UNIFORM
    if task is Task.NEXT_TOKEN:   # from the public split, so the held-out words being asked are not in it
        background = Background.from_texts(i.text for i in (public or held))
    return TaskData(task, tuple(held), tuple(public), provenance, path, background)


# Sources -----------------------------------------------------------------------------------------

def _load_jsonl_source(task: Task, path: Path, seed: int, fraction: float) -> TaskData:
    parsed = read_jsonl(task, path)
    rows = [_with_split(item, split, seed, fraction) for item, split in parsed]
    provenance = Provenance(
        name=path.stem, task=str(task), source=f"jsonl:{path.resolve()}", count=len(rows),
        held_out=sum(r["split"] == HELD_OUT for r in rows), seed=seed, held_out_fraction=fraction,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), built_at=_now(), fingerprint="",
    )
    return _task_data(task, rows, provenance, path)


def _read_hub(task: Task, source: DataSource) -> list[Item]:
    try:
        import datasets as hf  # optional and heavy: imported only for this source
    except ImportError:
        raise NotFound("a Hugging Face data source needs the 'datasets' package: pip install datasets") from None
    table = hf.load_dataset(source.location, source.hf_config, split=source.hf_split)
    names = [f.name for f in fields(ITEM_TYPES[task])]
    items: list[Item] = []
    for number, record in enumerate(table):
        row = {}
        for name in names:
            column = source.columns.get(name, name)
            value = _dig(record, column)
            if value is not None:
                row[name] = value
        if task is Task.TRANSLATION and "lang" not in row and source.lang:
            row["lang"] = source.lang
        item, _ = item_from_row(task, row, f"{source.location}[{source.hf_split}][{number}]")
        items.append(item)
    if not items:
        raise DataError(f"{source.location} split {source.hf_split!r} has no rows")
    return items


def _dig(record: Mapping, column: str) -> object:
    value: object = record
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# Cache -------------------------------------------------------------------------------------------

def _read_cached(task: Task, path: Path, meta_path: Path, fingerprint: str) -> TaskData | None:
    try:
        meta = json.loads(meta_path.read_text())
        provenance = Provenance(**meta)
        data = path.read_bytes()
    except (OSError, ValueError, TypeError):
        return None
    if provenance.fingerprint != fingerprint or hashlib.sha256(data).hexdigest() != provenance.sha256:
        return None
    rows = [json.loads(line) for line in data.decode().splitlines() if line]
    return _task_data(task, rows, provenance, path)


def _write_atomic(path: Path, text: str) -> str:
    """Write via a temporary file and a rename, so a reader never sees half a file; returns sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)   # mkstemp makes it private; the data is not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
