"""Where the caches that outlive a run live, and how their files are named.

A cache file's name is a hash of everything its contents depend on, so a changed image, model,
preprocessing or option gives a new name rather than stale contents.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Bump when what the caches hold changes meaning, so old files are no longer matched.
CACHE_FORMAT = 2


def default_cache_dir() -> Path:
    """$TLCLI_CACHE_DIR, else $XDG_CACHE_HOME/tlcli, else ~/.cache/tlcli."""
    if os.environ.get("TLCLI_CACHE_DIR"):
        return Path(os.environ["TLCLI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tlcli"


def cache_key(*parts) -> str:
    text = json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
