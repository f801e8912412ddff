"""An exclusive lock on a run directory, held for the whole run.

Two training processes writing one run directory would interleave metrics rows, double
TensorBoard curves and write every checkpoint twice. `RunLock` makes the second one stop
with one line naming the holder. The lock is a file, `.lock`, created with O_EXCL and
holding the holder's pid and host; a lock whose process is gone (killed with `kill -9`, a
machine that rebooted) is stale: a process on the same host detects that the pid no longer
runs and takes the lock over. A lock held from another host cannot be checked from here; the
message says which file to remove once that process is known to be gone.

A lock is taken over only when it is provably stale. A lock file that is empty or torn (not
JSON) more than a few seconds after it was created is: its writer died between creating and
writing it (the holder writes it at once). A lock file that is JSON but not what ofa_tf
writes (a pid that is not a positive integer, a host that is not a string, not an object) is
not: someone else wrote it, and whether a process still uses the directory cannot be told,
so it is one error naming the file and the field, and the user removes it.

Under multi-worker training only the chief writes the run directory, so only the chief
takes the lock (workers that are not the chief write nothing there).

On a URL model_dir (`gs://`, `s3://`, ...: `tf.io.gfile`) there is no atomic
create-if-absent, so the lock is advisory there: a process that finds no lock writes one
holding a random token, waits a moment and reads it back; it holds the lock only if its
token is the one there (the last writer wins, the others stop). Two runs started within that
moment of each other can still both see their own token on a store without read-after-write
consistency, so concurrent runs into one bucket path are prevented less strictly than on
local disk (docs/training.md).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.values import is_count, shown

LOCK_FILE = ".lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _foreign_field(data: Any) -> str | None:
    """Why a lock file's JSON value is not one ofa_tf wrote (`field=value`), or None."""
    if not isinstance(data, dict):
        return f"content={shown(data)}"
    pid, host = data.get("pid"), data.get("host")
    if not (is_count(pid) and 0 < pid < 2 ** 31):
        return f"pid={shown(pid)}"
    if not isinstance(host, str):
        return f"host={shown(host)}"
    return None


class RunLock:
    """`with RunLock(model_dir):` holds the directory's lock (the directory must exist)."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.held = False

    def holder(self) -> dict | None:
        """The lock file's {pid, host, started}, or None when there is none, it is unreadable or
        torn (not JSON), or it is not a lock ofa_tf wrote (`_foreign_field`)."""
        data = self._read()
        return data if isinstance(data, dict) and _foreign_field(data) is None else None

    def _read(self) -> Any:
        """The lock file's JSON value, or None when there is none or it is not JSON (torn)."""
        try:
            return io.read_json(self.path)
        except (OSError, ValueError, RecursionError):
            return None

    def _is_stale(self, holder: dict | None) -> bool:
        if holder is None:  # an unreadable lock: its writer died between create and write
            return time.time() - io.getmtime(self.path) > 5
        return holder.get("host") == socket.gethostname() and not _process_alive(holder["pid"])

    def acquire(self) -> "RunLock":
        """Takes the lock, taking over a stale one; raises OfaError naming a live holder."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        if io.is_url(self.path):
            return self._acquire_advisory(me)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                fd = None
            if fd is None:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise OfaError(f"model_dir={self.model_dir}: could not take {self.path} (another run keeps taking it)")

    def check(self) -> None:
        """Whether the lock can be taken, without taking it: an OfaError when its file is not
        one ofa_tf wrote or its holder still runs (`acquire` would stop there), so a run
        checks it before its slow start and fails in seconds. Nothing is written or removed."""
        if io.exists(self.path):
            self._existing_is_stale()

    def _existing_is_stale(self) -> bool:
        """True when the existing lock file is stale, its holder gone (False: the file went meanwhile);
        raises OfaError for a lock file ofa_tf did not write or a live holder."""
        data = self._read()
        if data is not None:
            problem = _foreign_field(data)
            if problem:
                raise OfaError(f"model_dir={self.model_dir}: {self.path}: {problem}: not a lock ofa_tf wrote, so "
                               f"whether a process still uses {self.model_dir} is unknown; remove {self.path} once "
                               "none does")
        try:
            stale = self._is_stale(data)  # None: unreadable or torn
        except OSError:  # removed meanwhile
            return False
        if not stale:
            raise self._in_use(data)
        return True

    def _take_over_if_stale(self) -> None:
        """Removes the existing lock file if its holder is gone (the caller then tries again);
        raises OfaError naming a live holder."""
        if not self._existing_is_stale():
            return
        try:
            io.remove(self.path)
        except FileNotFoundError:
            pass

    def _in_use(self, holder: dict | None) -> OfaError:
        who = (f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
               if holder else "another process")
        return OfaError(f"model_dir={self.model_dir}: in use by {who}; wait for it to finish, or remove "
                        f"{self.path} if that process is gone")

    def _acquire_advisory(self, me: dict, settle_seconds: float = 0.5) -> "RunLock":
        """The lock on a filesystem with no create-if-absent (a URL): write, then check it is ours."""
        me = {**me, "token": uuid.uuid4().hex}
        for _ in range(2):
            if io.exists(self.path):
                self._take_over_if_stale()
            io.write_json(self.path, me, indent=None)
            time.sleep(settle_seconds)  # a run that wrote at the same moment: the last writer's token stays
            holder = self.holder()
            if holder is not None and holder.get("token") == me["token"]:
                self.token, self.held = me["token"], True
                return self
            if holder is not None:
                raise self._in_use(holder)
        raise OfaError(f"model_dir={self.model_dir}: could not take {self.path} (another run keeps taking it)")

    def release(self) -> None:
        if self.held:
            self.held = False
            if io.is_url(self.path):  # advisory lock: remove it only while it is still ours
                holder = self.holder()
                if holder is None or holder.get("token") != getattr(self, "token", None):
                    return
            try:
                io.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
