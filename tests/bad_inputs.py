"""The bad-input table's harness: one case is one real command on a bad input.

Issue 27's cases (damaged run directories, odd datasets, edge-valued files) are not flags,
so they are not generated from flag types as in test_bad_flags.py: each is a `BadInput`
row, built by its `prepare` function in a fresh folder and run as the real command in a
subprocess. `check_bad_input` asserts what every bad input must give:

- the exit status (2 for a user error), and exactly one stderr line holding `message`;
- no traceback;
- nothing new or changed under the watched paths (the run directory the command reads or
  writes, its output folder), and nothing left in the command's $TMPDIR;
- the next normal command still works (exit 0). A row's own `then` runs on the folders as
  the bad command left them. A row on a run directory ({run}) with no `then` gets
  `RUN_STILL_WORKS`: the damage is undone first (the run directory's files are put back as
  they were before `prepare`), then the cheapest real command that loads the run (its
  config, checkpoint and supernet) and measures a subnet must succeed, so no row leaves a
  lock, a stray file or a changed setting that stops the next run. It costs a TensorFlow
  start and a supernet build per row, about what the bad command itself costs: affordable
  for every row, so none is left unchecked. Rows not on {run} (the foreign lock on a new
  folder, the datasets' rows, which train into a new folder) run their own `then` where
  they have one.

Paths in `args`, `watch` and `then` may use {tmp} (the case's folder), {run} (a trained-
looking run directory, `helpers.make_run_dir`, made when a case names it) and {demo} (the
shipped Fashion-MNIST subset).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Callable

from helpers import make_run_dir, run_tool, tiny_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
# The `then` of a row on {run} that has none: its files put back, the run must load and evaluate
RUN_STILL_WORKS = ("evaluate", "--model_dir={run}", "--archs=min", "--bn_calibration_images=0")


@dataclasses.dataclass(frozen=True)
class BadInput:
    """One row of the table: `tool ARGS` must fail with one line holding `message`."""

    id: str
    tool: str
    args: tuple[str, ...]
    message: str
    exit_code: int = 2
    prepare: Callable[[str], None] | None = None  # builds the case's inputs under {tmp} (after {run} exists)
    watch: tuple[str, ...] = ("{run}",)
    then: tuple[str, ...] | None = None  # (tool, *args): a normal command that must succeed afterwards
    # (none given, on {run}: RUN_STILL_WORKS on the run with its damage undone)


def with_tiny_space(prepare: Callable[[str], None]) -> Callable[[str], None]:
    """`prepare`, and {tmp}/tiny.json: the tiny space's file (16 px) that a row's training
    command names, so that a row failing only once the supernet is built fails in seconds."""
    def both(tmp: str) -> None:
        prepare(tmp)
        with open(os.path.join(tmp, "tiny.json"), "w") as f:
            json.dump(tiny_space(resolutions=(16,)).to_config(), f)
    return both


def snapshot(path: str) -> dict[str, str]:
    """Relative path -> sha256 (or 'dir') of everything under `path` (nothing: {})."""
    if not os.path.exists(path):
        return {}
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": hashlib.sha256(f.read()).hexdigest()}
    found = {}
    for root, dirs, names in os.walk(path):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), path)] = "dir"
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


def _contents(path: str) -> dict[str, bytes | None]:
    """Relative path -> bytes (None: a folder) of everything under the directory `path`."""
    found: dict[str, bytes | None] = {}
    for root, dirs, names in os.walk(path):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), path)] = None
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), path)] = f.read()
    return found


def _put_back(path: str, contents: dict[str, bytes | None]) -> None:
    """Makes the directory `path` hold exactly `contents` (`_contents`) again."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for name, data in sorted(contents.items()):
        full = os.path.join(path, name)
        if data is None:
            os.makedirs(full, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)


def _fill(text: str, tmp: str, run: str) -> str:
    return text.format(tmp=tmp, run=run, demo=DEMO)


def check_bad_input(case: BadInput, tmp: str) -> list[str]:
    """Runs `case` in the empty folder `tmp`; returns its problems (empty: it passed)."""
    uses_run = any("{run}" in text for text in (*case.args, *case.watch, *(case.then or ())))
    run = os.path.join(tmp, "run")
    if uses_run:
        make_run_dir(run)
    intact = _contents(run) if uses_run else None
    if case.prepare is not None:
        case.prepare(tmp)
    watched = [_fill(path, tmp, run) for path in case.watch]
    before = {path: snapshot(path) for path in watched}
    temp_dir = os.path.join(tmp, "tmpdir")
    os.makedirs(temp_dir, exist_ok=True)
    done = run_tool(case.tool, *(_fill(arg, tmp, run) for arg in case.args), timeout=600,
                    env={"TMPDIR": temp_dir})
    problems = []
    lines = done.stderr.strip().splitlines()
    if done.returncode != case.exit_code:
        problems.append(f"exit status {done.returncode}, expected {case.exit_code}")
    if "Traceback" in done.stderr:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, not one")
    elif case.message not in lines[0]:
        problems.append(f"the line does not hold {case.message!r}")
    for path in watched:
        after = snapshot(path)
        if after != before[path]:
            changed = sorted(k for k in set(after) | set(before[path]) if after.get(k) != before[path].get(k))
            problems.append(f"{path} changed: {changed[:4]}")
    left = os.listdir(temp_dir)
    if left:
        problems.append(f"left {left[:4]} in $TMPDIR")
    then = case.then
    if then is None and uses_run:
        then = RUN_STILL_WORKS
        if not problems:
            _put_back(run, intact)  # the damage undone, the run must work as before
    if not problems and then:
        tool, *args = then
        after = run_tool(tool, *(_fill(arg, tmp, run) for arg in args), timeout=600)
        if after.returncode != 0:
            problems.append(f"the next normal `{tool}` failed ({after.returncode}): {after.stderr.strip()[-300:]!r}")
    if problems:
        problems.append(f"stderr: {done.stderr.strip()[-600:]!r}")
    return problems
