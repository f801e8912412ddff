"""Writing run files so that a killed process never leaves a half-written one.

Every file ofa_tf writes (configs, checkpoints, metrics, records, search results, latency
tables, exports) goes through `atomic_write`: the content is written under a temporary
name in the destination folder and renamed into place only once complete, so a reader
sees either the old file or the new one, never a torn one. This is the one module that
decides how files are written, so a change of filesystem layer happens here.

Paths may be URLs (`gs://bucket/run`, `s3://...`, `hdfs://...`, TensorFlow's in-process
`ram://...`): every helper here sends a path with a `scheme://` to `tf.io.gfile`, and a
local path to `os` as before (same behaviour, same errors). TensorFlow is imported only when
a URL is met, so tools that avoid it start as fast as before. On a URL, `atomic_write`
writes to a local temporary file, copies it to `<dest dir>/.tmp-*` and renames that into
place (`gfile.rename(overwrite=True)`: atomic where the filesystem has renames; on object
stores a copy, still never a torn object under the final name). Readers that need a local
file (Keras `.weights.h5`, `np.load`) go through `local_copy`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from typing import IO, Any, Callable, Iterator

TEMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------- filesystem
def is_url(path: str) -> bool:
    """A path for `tf.io.gfile` (`gs://`, `s3://`, `ram://`, ...), not a local one."""
    return "://" in str(path)


def _gfile():
    import tensorflow as tf  # only for URLs: local paths never import TensorFlow here
    return tf.io.gfile


@contextlib.contextmanager
def _as_os_errors(path: str) -> Iterator[None]:
    """TensorFlow's filesystem errors as the OSError subclasses `os` raises (callers catch those)."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(2, e.message, path) from None
    except tf.errors.PermissionDeniedError as e:
        raise PermissionError(13, e.message, path) from None
    except tf.errors.OpError as e:
        raise OSError(5, e.message, path) from None


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    with _as_os_errors(path):
        return _gfile().exists(path)


def isdir(path: str) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    with _as_os_errors(path):
        return _gfile().isdir(path)


def isfile(path: str) -> bool:
    if not is_url(path):
        return os.path.isfile(path)
    return exists(path) and not isdir(path)


def makedirs(path: str) -> None:
    """Creates `path` and its parents (an existing directory is fine)."""
    if not is_url(path):
        os.makedirs(path, exist_ok=True)
        return
    with _as_os_errors(path):
        _gfile().makedirs(path)


def listdir(path: str) -> list[str]:
    """Names in the directory `path` (no trailing slashes)."""
    if not is_url(path):
        return os.listdir(path)
    with _as_os_errors(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]


def matching_files(directory: str, name_pattern: str) -> list[str]:
    """Paths of the entries of `directory` whose *name* matches the shell pattern
    `name_pattern` (`ckpt-*.json`), sorted; none when the directory does not exist.

    Only the name is matched: `directory` is taken literally, so a run directory named
    `runs/lr[0.1]` or `runs/q?` lists its own files, never a neighbour's (a glob of
    `directory/pattern` would read its `[`, `*` and `?` as wildcards)."""
    if not isdir(directory):
        return []
    return sorted(os.path.join(directory, name) for name in listdir(directory)
                  if fnmatch.fnmatchcase(name, name_pattern))


def remove(path: str) -> None:
    """Removes the file `path` (FileNotFoundError when it is not there)."""
    if not is_url(path):
        os.remove(path)
        return
    with _as_os_errors(path):
        _gfile().remove(path)


def rmtree(path: str) -> None:
    """Removes the directory `path` and everything in it; nothing when it is not there."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        with _as_os_errors(path):
            if _gfile().exists(path):
                _gfile().rmtree(path)
    except OSError:
        pass


def getmtime(path: str) -> float:
    if not is_url(path):
        return os.path.getmtime(path)
    with _as_os_errors(path):
        return _gfile().stat(path).mtime_nsec / 1e9


def getsize(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    with _as_os_errors(path):
        return _gfile().stat(path).length


def absolute(path: str) -> str:
    """`os.path.abspath` for local paths; a URL as it is (never made into `./gs:/...`)."""
    return path if is_url(path) else os.path.abspath(path)


def read_bytes(path: str) -> bytes:
    """The bytes of the file `path` (OSError when it cannot be read)."""
    if not is_url(path):
        with open(path, "rb") as f:
            return f.read()
    with _as_os_errors(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode()


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file with `path`'s content, for readers that need one (Keras `.weights.h5`,
    h5py, `np.load`): `path` itself when local, else a temporary copy with the same name
    ending (Keras checks `.weights.h5`), removed afterwards."""
    if not is_url(path):
        yield path
        return
    name = os.path.basename(path)
    suffix = name[name.index("."):] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix="ofa_tf-", suffix=suffix)
    os.close(fd)
    try:
        with _as_os_errors(path):
            _gfile().copy(path, tmp, overwrite=True)
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _publish(local: str, path: str) -> None:
    """Copies the local file `local` to `<dirname(path)>/.tmp-*` and renames it to the URL `path`."""
    gfile = _gfile()
    name = os.path.basename(path)
    suffix = name[name.index("."):] if "." in name else ""
    staged = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}{suffix}")
    try:
        with _as_os_errors(path):
            gfile.copy(local, staged, overwrite=True)
            gfile.rename(staged, path, overwrite=True)
    except BaseException:
        try:
            if gfile.exists(staged):
                gfile.remove(staged)
        except Exception:  # noqa: BLE001 - best effort: remove_stale_temp_files clears it later
            pass
        raise


def publish_tree(local: str, path: str) -> None:
    """Puts the local file or directory `local` at `path` (a URL or local path), replacing
    what is there: files are staged and renamed one by one (`_publish`)."""
    if not is_url(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(local, path)
        return
    if not os.path.isdir(local):
        _publish(local, path)
        return
    rmtree(path)
    for root, _, files in os.walk(local):
        target = os.path.join(path, os.path.relpath(root, local)) if root != local else path
        makedirs(target)
        for file in files:
            _publish(os.path.join(root, file), os.path.join(target, file))


def atomic_write(path: str, write: Callable[[str], Any]) -> None:
    """Calls `write(tmp_path)`, then renames `tmp_path` to `path` (same folder).

    The temporary name keeps the final name's suffix (e.g. `.weights.h5`, which Keras
    checks), and is removed if `write` fails. For a URL `path`, `write` gets a local
    temporary file, which is then staged beside `path` and renamed (`_publish`).
    """
    if is_url(path):
        name = os.path.basename(path)
        fd, tmp = tempfile.mkstemp(prefix="ofa_tf-", suffix=name[name.index("."):] if "." in name else "")
        os.close(fd)
        try:
            write(tmp)
            _publish(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
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
    fails in a second, not after the work it would hold. A URL is checked for what
    `tf.io.gfile` can tell without writing (a file where a directory is wanted, or the
    reverse); its permissions show at the first write.

    A file needs an existing, writable parent directory and must not be a directory; a
    directory may be created, so its nearest existing ancestor must be a writable
    directory (not a file) and the path itself, when it exists, a directory.
    """
    if is_url(path):
        try:
            if isdir(path):
                return None if directory else "is a directory"
            if exists(path) and directory:
                return "is a file, not a directory"
        except OSError as e:  # no such filesystem, no credentials, no network
            return f"cannot be reached ({str(e.strerror).splitlines()[0][:160]})"
        return None
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
    if is_url(path):
        with _as_os_errors(path):
            with _gfile().GFile(path, "wb") as f:
                f.write(data)
        return
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
    if is_url(path):
        return json.loads(read_text(path))
    with open(path) as f:
        return json.load(f)


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (checkpoint manifests)."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        if is_url(path):
            stack.enter_context(_as_os_errors(path))
            f: IO[bytes] = stack.enter_context(_gfile().GFile(path, "rb"))
        else:
            f = stack.enter_context(open(path, "rb"))
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temp_files(directory: str) -> list[str]:
    """Removes what `atomic_write` leaves behind when its process is killed (`.tmp-*` files
    and folders in `directory`); returns their names. Call it only while no other process
    can be writing there (a run holds its directory's lock)."""
    removed = []
    if not isdir(directory):
        return removed
    for name in sorted(listdir(directory)):
        if name.startswith(TEMP_PREFIX):
            path = os.path.join(directory, name)
            if isdir(path) and not os.path.islink(path):
                rmtree(path)
            else:
                remove(path)
            removed.append(name)
    return removed
