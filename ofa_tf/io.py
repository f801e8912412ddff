"""Writing run files so that a killed process never leaves a half-written one.

Every file ofa_tf writes (configs, checkpoints, metrics, records, search results, latency
tables, exports) goes through `atomic_write`: the content is written under a temporary
name in the destination folder and renamed into place only once complete, so a reader
sees either the old file or the new one, never a torn one. This is the one module that
decides how files are written, so a change of filesystem layer happens here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable

TEMP_PREFIX = ".tmp-"


def atomic_write(path: str, write: Callable[[str], Any]) -> None:
    """Calls `write(tmp_path)`, then renames `tmp_path` to `path` (same folder).

    The temporary name keeps the final name's suffix (e.g. `.weights.h5`, which Keras
    checks), and is removed if `write` fails.
    """
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path)
    suffix = name[name.index("."):] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def unwritable_reason(path: str, directory: bool = False) -> str | None:
    """Why `path` cannot be written (as a file, or with `directory` as a directory that
    may not exist yet), or None when it can: checked before any work, so a bad output path
    fails in a second, not after the work it would hold.

    A file needs an existing, writable parent directory and must not be a directory; a
    directory may be created, so its nearest existing ancestor must be a writable
    directory (not a file) and the path itself, when it exists, a directory.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        if not directory:
            return "is a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    if os.path.exists(path):
        return "is a file, not a directory" if directory else None if os.access(path, os.W_OK) else "is not writable"
    parent = os.path.dirname(path)
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"lies under the file {existing}"
    if not directory and existing != parent:
        return f"directory {parent} does not exist"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"directory {existing} is not writable"
    return None


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` (not atomically: callers stage it under a temporary name)."""
    with open(path, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    atomic_write(path, lambda tmp: write_bytes(tmp, text.encode()))


def write_json(path: str, data: Any, indent: int | None = 1) -> None:
    """Writes `data` as JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=indent))


def read_json(path: str) -> Any:
    """The JSON value in `path` (OSError / ValueError propagate: callers word them)."""
    with open(path) as f:
        return json.load(f)


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (checkpoint manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temp_files(directory: str) -> list[str]:
    """Removes what `atomic_write` leaves behind when its process is killed (`.tmp-*` files
    and folders in `directory`); returns their names. Call it only while no other process
    can be writing there (a run holds its directory's lock)."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        if name.startswith(TEMP_PREFIX):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(name)
    return removed
