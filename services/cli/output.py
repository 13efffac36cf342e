"""What the CLI prints: aligned tables and fields for people, JSON for scripts, one error line.

Results go to stdout; warnings, secrets shown once (a new mnemonic) and errors go to stderr, so
`agora ... --json | jq` always sees a clean document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

from services.common.units import format_tao


class CommandFailed(Exception):
    """An expected failure the CLI reports as `error: <code>: <message>` with exit code 1."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def tao(rao: int) -> str:
    """A TAO amount for people: '1,000.500000000'."""
    return format_tao(rao)


def tao_plain(rao: int) -> str:
    """A TAO amount for JSON: no thousands separators, so parse_tao reads it back exactly."""
    return format_tao(rao).replace(",", "")


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def print_json_line(data: object) -> None:
    """One object per line (JSON Lines), for streams such as `chain blocks --follow`."""
    print(json.dumps(data, separators=(",", ":")), flush=True)


def print_fields(pairs: Iterable[tuple[str, object]]) -> None:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        print(f"{key + ':':<{width + 1}} {value}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                right: Sequence[int] = ()) -> None:
    """Columns padded to their widest cell; the columns numbered in `right` (amounts) align right."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(parts).rstrip()

    print(line(headers))
    for row in cells:
        print(line(row))


def note(message: str) -> None:
    print(message, file=sys.stderr)


def error(code: str, message: str) -> None:
    print(f"error: {code}: {message}", file=sys.stderr)
