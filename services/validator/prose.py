"""English prose on every machine: the docstrings of Python's standard library (read from source with
`ast`, never imported) and the licence texts in /usr/share/common-licenses.

A paragraph is kept only if it reads as running text (no code, doctest, list, table or reST
markup), has at least 30 words, and is not a near-copy of a paragraph already kept (the GPL
versions, or `_pyio` and `io`, share most of their text). Everything here is public.
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LICENSES_DIR = Path("/usr/share/common-licenses")

# Folders of the standard library that hold tests, demos, vendored or generated code.
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages",
              "dist-packages", "__pycache__", "__phello__", "pydoc_data", "encodings"}
# reST inline markup, unwrapped before the checks: :func:`len` -> len, ``x`` -> x, *x* -> x.
_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``|`([^`]*)`_?|\*([^*\s][^*]*?)\*")
# What never appears in running text: doctests, literal blocks, tables, templates, expressions, links.
_MARKUP = re.compile(r"`|::|\*|>>>|={2,}|-{3,}|~{3,}|\$|[{}]|!=|[<>]=|\bhttps?://")
_LIST_LINE = re.compile(r"^\s*(?:[-*+|:>]|\d+[.)]\s|[a-z][.)]\s|\w+\s+--\s)")
_TEXT_WORD = re.compile(r"^[^=<>{}|\\^~$#@%&+]*[A-Za-z][^=<>{}|\\^~$#@%&+]*$")
_START = re.compile(r"^[(\"'“]?[A-Za-z]")
# A sentence ends at . ! or ? (and a closing quote or bracket), before a capital.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]”’]?\s+(?=[(\"'“‘]?[A-Z])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Mrs.", "Dr.", "Inc.", "No.", "St.", "approx.")

MIN_PARAGRAPH_WORDS = 30
_SHINGLE = 5           # words per shingle for near-duplicate detection
_DUPLICATE_SHARE = 0.5  # a paragraph half made of shingles seen before is a near-copy


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str      # one line, single spaces
    origin: str    # "stdlib:email.message", "licence:GPL-3"
    group: str     # the topic it shares with its neighbours: "stdlib:email", "licence:GPL"


def clean_paragraph(block: str, *, allow_indent: bool = False, min_words: int = MIN_PARAGRAPH_WORDS) -> str | None:
    """The block as one line of prose, or None if it is not running text.

    Docstring paragraphs whose lines are not all indented alike hold code or definition lists, so
    they are dropped; licence texts indent their first lines, so `allow_indent` lets them through.
    """
    lines = [line for line in block.splitlines() if line.strip()]
    if not lines:
        return None
    if any(_LIST_LINE.match(line) for line in lines):
        return None
    if not allow_indent and len({len(line) - len(line.lstrip()) for line in lines}) > 1:
        return None
    text = _LITERAL.sub(lambda m: next(g for g in m.groups() if g is not None), _ROLE.sub(r"\1", block))
    text = " ".join(text.split())
    if _MARKUP.search(text) or not _START.match(text) or text[-1] not in ".!?":
        return None
    words = text.split()
    if len(words) < min_words:
        return None
    if sum(bool(_TEXT_WORD.match(w)) for w in words) < 0.9 * len(words):
        return None
    return text


def split_sentences(text: str) -> list[str]:
    """Sentences of a one-line paragraph, not split after common abbreviations (e.g., etc.)."""
    pieces = _SENTENCE_END.split(text)
    sentences: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if sentences and sentences[-1].endswith(_ABBREVIATIONS):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if any(p in _SKIP_DIRS or p.startswith(("test", "config-")) for p in parts):
            continue
        files.append(path)
    return sorted(files)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stdlib_paragraphs(root: Path | None = None) -> Iterator[Paragraph]:
    """Paragraphs of module, class and function docstrings, grouped by top-level package."""
    root = root or stdlib_root()
    for path in _stdlib_files(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue
        module = _module_name(root, path)
        group = "stdlib:" + module.split(".")[0].lstrip("_")   # _pyio and io, _collections_abc and collections
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            for block in re.split(r"\n\s*\n", doc):
                text = clean_paragraph(block)
                if text:
                    yield Paragraph(text, f"stdlib:{module}", group)


def licence_paragraphs(directory: Path = LICENSES_DIR) -> Iterator[Paragraph]:
    """Paragraphs of each licence text once (GPL and GPL-3 are the same file), grouped by family."""
    seen: set[Path] = set()
    for path in sorted(directory.glob("*")):
        real = path.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        try:
            text = real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        family = re.sub(r"-[\d.]+$", "", real.name)
        for block in re.split(r"\n\s*\n", text):
            cleaned = clean_paragraph(block, allow_indent=True)
            if cleaned:
                yield Paragraph(cleaned, f"licence:{real.name}", f"licence:{family}")


def drop_near_duplicates(paragraphs: Iterator[Paragraph] | list[Paragraph]) -> list[Paragraph]:
    """Keep the first of each set of near-copies: a paragraph whose 5-word shingles were mostly
    seen before (in any kept paragraph) is dropped. Linear in the total length."""
    seen: set[tuple[str, ...]] = set()
    kept: list[Paragraph] = []
    for para in paragraphs:
        words = para.text.lower().split()
        shingles = {tuple(words[i: i + _SHINGLE]) for i in range(max(1, len(words) - _SHINGLE + 1))}
        if len(shingles & seen) > _DUPLICATE_SHARE * len(shingles):
            continue
        seen |= shingles
        kept.append(para)
    return kept


@functools.lru_cache(maxsize=1)
def english_paragraphs() -> tuple[Paragraph, ...]:
    """All English paragraphs of this machine, licences first, near-copies dropped (parsed once per
    process: the next-token and embedding sets both start from them)."""
    return tuple(drop_near_duplicates([*licence_paragraphs(), *stdlib_paragraphs()]))
