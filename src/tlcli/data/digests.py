"""Content digests of images, so the same picture under two names is found before splitting.

A file's digest is kept in the cache folder (``$TLCLI_CACHE_DIR/digests/``) under its resolved
path, size and modification time, the key the other caches use for a file, so a second load
of an unchanged data set reads no image bytes again. The store is only a speed-up: one that
cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tlcli.core.cache import cache_key, default_cache_dir
from tlcli.core.errors import TlcliError
from tlcli.core.files import read_regular_file, write_file_atomically

_STORE_LIMIT = 256 << 20
_CHUNK = 1 << 20


def bytes_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _hash_file(path: Path) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _store_path(root: Path) -> Path:
    return default_cache_dir() / "digests" / f"{cache_key('digests', str(root.resolve()))}.json"


def _read_store(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(read_regular_file(path, limit=_STORE_LIMIT, what="digest cache"))
    except (TlcliError, ValueError):  # absent or damaged: hash again
        return {}
    return stored if isinstance(stored, dict) else {}


def file_digests(root: Path, paths: Sequence[Path]) -> list[str]:
    """The digest of each file's bytes; a file that can no longer be read gets a digest of
    its own name, so it is never taken for a copy of another."""
    store_path = _store_path(root)
    stored = _read_store(store_path)
    used: dict[str, str] = {}
    digests = []
    for path in paths:
        try:
            info = path.stat()
            key = f"{path.resolve()}\t{info.st_size}\t{info.st_mtime_ns}"
            digest = stored.get(key) or _hash_file(path)
        except OSError:
            digests.append(bytes_digest(f"unreadable:{path}".encode()))
            continue
        used[key] = digest
        digests.append(digest)
    # Each split is asked for in turn: the others' entries stay while their files are unchanged,
    # so the store holds the data set's current files and never outgrows them.
    merged = {**{key: digest for key, digest in stored.items() if key not in used and _unchanged(key)}, **used}
    if merged != stored:
        with contextlib.suppress(TlcliError, OSError):
            store_path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(json.dumps(merged).encode(), store_path)
    return digests


def _unchanged(key: str) -> bool:
    path, size, mtime = key.rsplit("\t", 2)
    try:
        info = Path(path).stat()
    except OSError:
        return False
    return f"{info.st_size}\t{info.st_mtime_ns}" == f"{size}\t{mtime}"
