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

Files and folders are created with the usual permissions (0666 / 0777 less the process's
umask, as any other tool makes them), never `tempfile`'s private 0600 / 0700, so a teammate
or a serving job can read a run. A write that runs out of room (`SPACE_ERRNOS`: no space
left, over the quota, over the file-size limit) raises OSError naming the file it was
writing, with its temporary file removed; `space_problem` recognises one (also from
TensorFlow's own writers) so commands say it in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from typing import IO, Any, Callable, Iterator

TEMP_PREFIX = ".tmp-"
TEMP_RANDOM = 8  # random characters of a temporary name, as tempfile's
# Out of room: no space left, over the disk quota, over the file-size limit (`ulimit -f`:
# Python ignores SIGXFSZ, so the write fails with EFBIG).
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SPACE_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EFBIG: "file too large (over the file-size limit, ulimit -f, or the filesystem's)"}
_TF_SPACE_ERROR = re.compile(r"(\S+); (No space left on device|Disk quota exceeded|File too large)")


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


def _suffix(name: str) -> str:
    """The file name `name`'s ending from its first dot (`.weights.h5`: Keras checks it), kept by
    its temporary names and local copies."""
    return name[name.index("."):] if "." in name else ""


def temp_name(suffix: str = "", prefix: str = TEMP_PREFIX) -> str:
    """A fresh temporary name (`.tmp-XXXXXXXX<suffix>`: random characters, as tempfile's);
    every temporary file or folder ofa_tf makes is named by it, so `remove_stale_temp_files`
    finds what a killed process left."""
    return f"{prefix}{uuid.uuid4().hex[:TEMP_RANDOM]}{suffix}"


def _create_unique(directory: str, create: Callable[[str], None], suffix: str = "",
                   prefix: str = TEMP_PREFIX) -> str:
    """`create(path)` at a fresh `temp_name` in `directory` (another name while one exists); the path."""
    while True:
        path = os.path.join(directory, temp_name(suffix, prefix))
        try:
            create(path)
            return path
        except FileExistsError:
            continue


def _new_temp_file(directory: str, suffix: str) -> str:
    """Creates an empty `.tmp-*` file in `directory` with the usual permissions (0666 less
    the umask; `tempfile.mkstemp` would make it 0600, and the renamed file would keep that)."""
    return _create_unique(directory, lambda path: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)),
                          suffix)


def make_temp_dir(prefix: str = TEMP_PREFIX, dir: str | None = None) -> str:  # noqa: A002 - tempfile's name
    """`tempfile.mkdtemp` with the usual permissions (0777 less the umask, not 0700), for a
    folder that is renamed into place as a run or an export: it stays readable by others."""
    return _create_unique(dir if dir is not None else tempfile.gettempdir(), lambda path: os.mkdir(path, 0o777),
                          prefix=prefix)


def topmost_missing_folder(path: str) -> str | None:
    """The topmost folder of `path` that does not exist yet (the first one `makedirs`
    creates), so a tool that stops early can remove what it made (`remove_empty_folders`);
    None when `path` is a directory already. A URL is its own (a store has no parents to walk)."""
    if isdir(path):
        return None
    if is_url(path):
        return path
    first = os.path.abspath(path)
    while not os.path.exists(os.path.dirname(first)):
        first = os.path.dirname(first)
    return first


def remove_empty_folders(path: str, created: str) -> None:
    """Removes the local folder `path` and its parents up to `created` (the topmost one a tool
    made: `topmost_missing_folder`), each only while it is empty, so a folder something else
    has written to meanwhile is kept. Best effort: never raises."""
    folder = os.path.abspath(path)
    try:
        while len(folder) >= len(created):
            os.rmdir(folder)
            folder = os.path.dirname(folder)
    except OSError:
        pass


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
    fd, tmp = tempfile.mkstemp(prefix="ofa_tf-", suffix=_suffix(os.path.basename(path)))
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
    staged = os.path.join(os.path.dirname(path), temp_name(_suffix(os.path.basename(path))))
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
        fd, tmp = tempfile.mkstemp(prefix="ofa_tf-", suffix=_suffix(os.path.basename(path)))
        os.close(fd)
        try:
            write(tmp)
            _publish(tmp, path)
        except OSError as e:
            if e.errno in SPACE_ERRNOS:  # (the local temporary file ran out of room)
                raise OSError(e.errno, os.strerror(e.errno), path) from None
            raise
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    tmp = _new_temp_file(os.path.dirname(path) or ".", _suffix(os.path.basename(path)))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in SPACE_ERRNOS:  # named by the file it was writing, not its temp
            raise OSError(e.errno, os.strerror(e.errno), path) from None
        raise


def _limits(path: str) -> tuple[int, int]:
    """(longest name, longest path) in bytes on the filesystem of `path`'s nearest existing
    ancestor (PATH_MAX counts the final NUL, so a path may be one byte shorter)."""
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX") - 1
    except (OSError, ValueError):  # no pathconf here: the usual Linux limits
        return 255, 4095


def _too_long(path: str, directory: bool, room_inside: int) -> str | None:
    """Why the absolute local `path` is longer than its filesystem allows, or None: one of
    its names over NAME_MAX (a file's temporary name `.tmp-XXXXXXXX<suffix>` included), or
    the path, with the `room_inside` bytes a directory's contents add, over PATH_MAX."""
    name_max, path_max = _limits(path)
    names = [name for name in path.split(os.sep) if name]
    if not directory and names:
        name = names[-1]
        names.append(temp_name(_suffix(name)))
    for index, name in enumerate(names):
        size = len(os.fsencode(name))
        if size > name_max:
            temporary = not directory and index == len(names) - 1
            name = names[-2] if temporary else name
            shown = repr(name if len(name) <= 40 else name[:20] + "..." + name[-12:])
            if temporary:
                shown += f" written as {TEMP_PREFIX}{'X' * TEMP_RANDOM}.* first"
            return f"too long: the name {shown} is {size} bytes, the filesystem allows {name_max}"
    size = len(os.fsencode(path))
    if directory:
        inside = room_inside + 1 if room_inside else 0  # (+ the separator)
    else:  # the temporary name beside it, when longer
        inside = max(0, len(os.fsencode(names[-1])) - len(os.fsencode(names[-2]))) if names else 0
    if size + inside > path_max:
        what = f" and the files written inside it need {inside} more" if directory and inside else ""
        return f"too long: the path is {size} bytes{what}, the filesystem allows {path_max}"
    return None


def unwritable_reason(path: str, directory: bool = False, room_inside: int = 0) -> str | None:
    """Why `path` cannot be written (as a file, or with `directory` as a directory that
    may not exist yet), or None when it can: checked before any work, so a bad output path
    fails in a second, not after the work it would hold. A URL is checked for what
    `tf.io.gfile` can tell without writing (a file where a directory is wanted, or the
    reverse); its permissions show at the first write.

    A file needs an existing, writable parent directory and must not be a directory; a
    directory may be created, so its nearest existing ancestor must be a writable
    directory (not a file) and the path itself, when it exists, a directory. A local path
    must also fit the filesystem's limits on names and paths (`_too_long`): with the
    temporary name of a file, and for a directory with `room_inside`, the bytes of the
    longest path the caller writes inside it (a run's: `ofa_tf.runs.directory`), so a run
    fails here, not after building its model.
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
    too_long = _too_long(path, directory, room_inside)
    if too_long:
        return too_long
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
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        if e.filename is None:  # a failed write() names no file: say which
            raise OSError(e.errno, e.strerror, path) from None
        raise


def space_problem(error: BaseException) -> tuple[str, str | None] | None:
    """(why, path) when `error` is a write that ran out of room (`SPACE_ERRNOS`), from
    Python (an OSError) or from TensorFlow's own writers (TensorBoard events: an OpError
    whose message ends `PATH; No space left on device`); None for any other error."""
    if isinstance(error, OSError):
        if error.errno not in SPACE_ERRNOS:
            return None
        return _SPACE_REASONS[error.errno], error.filename if isinstance(error.filename, str) else None
    if type(error).__module__.startswith("tensorflow"):
        found = _TF_SPACE_ERROR.search(str(getattr(error, "message", error)))
        if found:
            number = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                      "File too large": errno.EFBIG}[found.group(2)]
            return _SPACE_REASONS[number], found.group(1)
    return None


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
