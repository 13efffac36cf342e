"""Where Agora keeps what it can rebuild: converted models, assembled GGUF files, held-out data sets.

    cache_dir()            -> $AGORA_CACHE_DIR, else $XDG_CACHE_HOME/agora, else ~/.cache/agora
    cache_dir("models")    -> the same with /models appended

Read on every call (not at import), so a test or a process that sets AGORA_CACHE_DIR late still
gets it. Nothing is created here: writers make their folders when they write.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "AGORA_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """$AGORA_CACHE_DIR, else $XDG_CACHE_HOME/agora, else ~/.cache/agora; `parts` are joined below it.

    An empty variable counts as unset (as the XDG Base Directory spec says for XDG_CACHE_HOME).
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        root = Path(explicit).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "agora"
    return root.joinpath(*parts)
