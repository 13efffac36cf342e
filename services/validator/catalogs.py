"""Human translations from the gettext catalogs on this machine: compiled `.mo` files hold each
program's English messages (msgid) and a translator's rendering (msgstr).

Only plain sentences become translation pairs: messages with format specifiers (%s, {0}, %(x)s),
plural forms, markup, command-line option tables and names lists are skipped. `msgfmt` leaves fuzzy
(unreviewed) entries out of a `.mo` file unless told otherwise, so what is read here was reviewed.
Everything read here is public: every miner has the same files.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCALE_DIR = Path("/usr/share/locale")

_MO_MAGIC_LE = 0x950412DE
_MO_MAGIC_BE = 0xDE120495

# A message with a placeholder is a template, not a sentence, and its translation may move or
# rename the placeholder: printf (%s, %-10lu, %1$s, %%), Python %(name)s, Qt %1, str.format and
# brace templates {0} {name}, shell $1 ${var}, markup or placeholders <b> <file>, entities &amp;.
_FORMAT = re.compile(
    r"%(?:\([^)]*\))?(?:\d+\$)?[-#0 +'I]*[\d*]*(?:\.[\d*]+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGcrsaApnmb%]"
    r"|%\d|\{[^{}]*\}|\$\{?\w+|<[^<>]+>|&#?\w+;"
)
# Characters that appear in code, paths and option syntax but hardly ever in a sentence.
_CODE_CHARS = re.compile(r"[=|\\{}\[\]<>_@#$^~*`]|://|(?:^|\s)--?\w|\.\w+\(")
_COLUMNS = re.compile(r"\S {3,}\S|\t")            # column layout: help tables, usage lines
_LOWER_WORD = re.compile(r"^[^\W\d_A-Z]+[,.;:!?]?$")  # "file", "über,": a word in running text
_STARTS_LIKE_TEXT = re.compile(r"^[\"'(«„¿¡]?\w")

MIN_WORDS = 5
MAX_WORDS = 60


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    msgid: str
    msgstr: str
    domain: str      # the catalog's name, e.g. "coreutils"
    plural: bool     # a msgid with plural forms (ngettext): skipped as a pair


def read_mo(path: Path) -> Iterator[CatalogEntry]:
    """Every entry of one compiled catalog, decoded with the charset its header names.

    An entry that does not decode is skipped (some catalogs declare UTF-8 but hold Latin-1).
    The message context (msgctxt) is dropped: it disambiguates for the program, not the reader.
    """
    data = path.read_bytes()
    if len(data) < 20:
        return
    (magic,) = struct.unpack("<I", data[:4])
    order = "<" if magic == _MO_MAGIC_LE else ">" if magic == _MO_MAGIC_BE else None
    if order is None:
        return
    _, count, ids_at, strs_at = struct.unpack(order + "4I", data[4:20])
    entries: list[tuple[bytes, bytes]] = []
    for i in range(count):
        id_len, id_off = struct.unpack(order + "2I", data[ids_at + 8 * i: ids_at + 8 * i + 8])
        str_len, str_off = struct.unpack(order + "2I", data[strs_at + 8 * i: strs_at + 8 * i + 8])
        entries.append((data[id_off: id_off + id_len], data[str_off: str_off + str_len]))
    charset = "utf-8"
    for msgid, msgstr in entries:
        if msgid == b"":
            found = re.search(rb"charset=([\w.-]+)", msgstr)
            if found:
                charset = found.group(1).decode("ascii")
    domain = path.stem
    for raw_id, raw_str in entries:
        if raw_id == b"":
            continue  # the header
        try:
            msgid, msgstr = raw_id.decode(charset), raw_str.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        msgid = msgid.rsplit("\x04", 1)[-1]
        plural = "\x00" in msgid
        yield CatalogEntry(msgid.split("\x00", 1)[0], msgstr.split("\x00", 1)[0], domain, plural)


def catalog_files(lang: str, locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """The compiled catalogs for one language, in a fixed order (so builds are reproducible)."""
    return sorted((locale_dir / lang / "LC_MESSAGES").glob("*.mo"))


def sentence_like(text: str, *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """A message that reads as running text: no placeholder, no code or option syntax, no table,
    between `min_words` and `max_words` words, and at least three lower-case words (which also
    rules out Title Case names such as "Hong Kong Special Administrative Region of China")."""
    stripped = text.strip()
    if not stripped or _FORMAT.search(stripped) or _CODE_CHARS.search(stripped) or _COLUMNS.search(stripped):
        return False
    if not _STARTS_LIKE_TEXT.match(stripped):
        return False
    words = stripped.split()
    if not min_words <= len(words) <= max_words:
        return False
    if sum(any(c.isalpha() for c in w) for w in words) < 0.7 * len(words):
        return False
    return sum(bool(_LOWER_WORD.match(w)) for w in words) >= 3


def has_placeholder(text: str) -> bool:
    return bool(_FORMAT.search(text))


def normalize_space(text: str) -> str:
    """One space between words (line breaks and no-break spaces included), none at the ends."""
    return " ".join(text.split())


def translation_pairs(lang: str, locale_dir: Path = LOCALE_DIR) -> Iterator[tuple[str, str, str]]:
    """(English source, human reference, domain) for one target language, each English message once.

    The first catalog (by name) that translates a message wins; a msgstr equal to its msgid
    (left untranslated) or of a very different length (a fragment or a note) is skipped.
    """
    seen: set[str] = set()
    for path in catalog_files(lang, locale_dir):
        for entry in read_mo(path):
            if entry.plural or not entry.msgstr.strip():
                continue
            source, reference = normalize_space(entry.msgid), normalize_space(entry.msgstr)
            if source in seen or source == reference:
                continue
            if not sentence_like(entry.msgid) or has_placeholder(reference) or _COLUMNS.search(entry.msgstr.strip()):
                continue
            n_src, n_ref = len(source.split()), len(reference.split())
            if not 0.4 * n_src <= n_ref <= 2.5 * n_src:
                continue
            seen.add(source)
            yield source, reference, entry.domain


def translated_prose(lang: str, locale_dir: Path = LOCALE_DIR, *, min_words: int = 30) -> Iterator[tuple[str, str]]:
    """(paragraph, domain): long translated help texts in `lang`, as prose for the next-word task."""
    seen: set[str] = set()
    for path in catalog_files(lang, locale_dir):
        for entry in read_mo(path):
            if entry.plural or not entry.msgstr.strip():
                continue
            for block in re.split(r"\n\s*\n", entry.msgstr):
                if not sentence_like(block, min_words=min_words, max_words=400):
                    continue
                text = normalize_space(block)
                if text not in seen and text[-1] in ".!?":
                    seen.add(text)
                    yield text, entry.domain
