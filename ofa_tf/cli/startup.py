"""How every ofa_tf command (and benchmark) starts: absl flags first, quiet TensorFlow, one-line errors.

Import this module first in a command: it sets TF_CPP_MIN_LOG_LEVEL=3 (unless set) before
anything imports TensorFlow. TF 2.21 still writes oneDNN notices and "no CUDA driver" lines
straight to file descriptor 2 before its log level applies, which would bury a command's
one-line error, so:

- `load_tensorflow()` imports TensorFlow (and Keras) with fd 2 pointed at /dev/null (see
  `ofa_tf.native_logs`); `load_tensorflow(start=True)` also starts its runtime (the first
  op) silenced. Call it before importing modules that import TensorFlow.
- `run(main, ...)` is `absl.app.run(main)`: the flags are parsed first, and only then
  TensorFlow loads (silenced), so `--help` and a flag that does not parse answer at once.
  A command module therefore defines its flags from modules that import no TensorFlow and
  imports the library in the functions that run after parsing (ofa_tf/cli/__init__.py).
  Commands that must configure TensorFlow before its first op (MultiWorkerMirroredStrategy,
  logical CPU devices) pass `before_first_op`: it runs after the flags are parsed, then the
  runtime starts, both silenced.

`run` also gives every command the same behaviour at the edges:
- `--help` (`-h`, `--helpshort`) prints the command's doc and its OWN flags grouped by
  concern (`config_flags.grouped_help`) on stdout and exits 0, before TensorFlow loads;
  `--helpfull` is absl's list of every flag defined by then (absl's own included).
- A user mistake ends the program with one line `error: ...` on stderr and exit status 2:
  an `OfaError`, a missing / unreadable file, a flag that does not parse, an unknown flag, a
  positional argument (every option is a --flag).
- Ctrl-C / SIGTERM end it with one line on stderr (what was kept) and exit status 128 +
  the signal (130 for Ctrl-C, 143 for SIGTERM), from the command's first moment: see
  "Signals" below.
- Library errors name arguments (`epochs=0: ...`); `word_as_flags` words them as the
  command's flags (`--epochs=0: ...`).

Signals. A command (a program whose start imports this module: `python -m ofa_tf.cli.NAME`,
a console script, a benchmark) takes SIGINT and SIGTERM from the moment this module is
imported: while it reads its flags and while TensorFlow loads. Until `run` starts the work
nothing has been written, so a signal ends the process at once (one line, exit 128 + the
signal) instead of a KeyboardInterrupt traceback from the middle of an import, or a silent
death by SIGTERM.
The work itself (`main`, and TensorFlow's runtime start) runs within
`ofa_tf.interrupts.stop_on_signals()`: a signal becomes `Interrupted` at the next safe point,
the work's `finally`s remove what it staged, and the command says what was kept. The work's
temporary files go to a private folder under $TMPDIR (TensorFlow's autograph sources and
the SavedModels a conversion stages included), removed when the work ends however it ends.
An error raised while a signal is pending (a child process the same Ctrl-C stopped) is
reported as the interruption. A signal after the work, while the process exits, ends it once
Python's exit clean-up (which removes autograph's files) has run; in the interpreter's final
teardown, after that clean-up, signals are ignored (the process is ending, its result
complete). A program that imports a command module as a library (a test run, a notebook)
keeps Python's own handling outside `run`.

OFA_TF_TF_LOGS=1 keeps TensorFlow's native start-up output. The runtime starts with
`ofa_tf.graph_optimization.configure_graph_optimization()` applied (Grappler off on a host
with no GPU or TPU, unless OFA_TF_GRAPH_OPTIMIZATION=on).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

import atexit  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from ofa_tf.interrupts import SIGNALS, Interrupted, raise_if_interrupted, stop_on_signals  # noqa: E402 (stdlib only)


# ------------------------------------------------------------------- signals outside the work
class _Outside:
    """How a command takes a signal outside `run`'s work (module docstring, "Signals")."""

    stderr: int | None = None  # a copy of fd 2: TensorFlow's import points fd 2 at /dev/null
    began = False  # `run` started the work: from then on a signal never ends the process at once
    late: int | None = None  # a signal that came after the work, reported once the exit's clean-up ran
    reported = False  # the command's last line (an error, or what an interruption kept) is written


def _started_as_a_command() -> bool:
    """Whether this import is part of the program's own start: every frame above it is a
    module body or the import machinery (`python -m`, a console script, `python FILE`), not
    a function of a program that imports ofa_tf as a library (pytest, a notebook)."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if frame.f_globals is not globals() and code.co_name != "<module>" \
                and not code.co_filename.startswith("<frozen ") and os.path.basename(code.co_filename) != "runpy.py":
            return False
        frame = frame.f_back
    return True


def _exit_now(signum: int) -> None:
    """One line and exit status 128 + `signum`, at once: called only where no clean-up is
    left to run (before the work, or after Python's exit clean-up)."""
    try:
        sys.stdout.flush()  # a result already printed stays printed
    except Exception:  # noqa: BLE001 - the signal may have come in the middle of a write
        pass
    os.write(_Outside.stderr, f"{Interrupted(signum)}\n".encode())
    os._exit(128 + signum)


def _on_signal_outside_work(signum, frame) -> None:
    if not _Outside.began or _Outside.late is not None:  # nothing written yet, or a second signal
        _exit_now(signum)
    _Outside.late = signum


def _report_late_signal() -> None:
    """Registered before anything else registers with atexit, so it runs last. Then only the
    interpreter's teardown is left, where Python puts default handlers back (a signal would
    kill the process with no line): the signals are ignored there, the process is ending
    with its own exit status."""
    if _Outside.late is not None and not _Outside.reported:
        _exit_now(_Outside.late)
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _take_signals_from_the_start() -> None:
    """For a command: the handlers until `run` starts the work, and the report of a late signal."""
    if not _started_as_a_command():
        return
    _Outside.stderr = os.dup(2)
    atexit.register(_report_late_signal)
    for s in SIGNALS:
        signal.signal(s, _on_signal_outside_work)


_take_signals_from_the_start()  # before absl, TensorFlow and the rest load

import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

from absl import app, flags  # noqa: E402

from ofa_tf.cli import config_flags  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.graph_optimization import configure_graph_optimization  # noqa: E402
from ofa_tf.io import space_problem, write_text  # noqa: E402
from ofa_tf.native_logs import quiet_native_logs  # noqa: E402

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C
HELP_ARGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?", "--?")
FLAGS = flags.FLAGS

_runtime_started = False


# ------------------------------------------------------------------------- TensorFlow
def load_tensorflow(start: bool = False) -> Any:
    """Imports TensorFlow and Keras silenced (and, with `start`, starts TensorFlow's
    runtime); returns the TensorFlow module."""
    with quiet_native_logs():
        import tensorflow as tf  # noqa: PLC0415 (here, not at the top: silenced, and only for commands that need it)
        import keras  # noqa: F401, PLC0415 (the library's modules import it: loaded here with TensorFlow)

        tf.config.list_physical_devices()
    if start:
        start_runtime()
    return tf


def start_runtime(before_first_op: Callable[[], object] | None = None) -> None:
    """Runs `before_first_op` (if any), then TensorFlow's first op, both silenced; once."""
    global _runtime_started
    if _runtime_started:
        return
    tf = load_tensorflow()
    try:
        configure_graph_optimization()  # OFA_TF_GRAPH_OPTIMIZATION: Grappler off on a CPU-only host by default
    except OfaError as e:  # a bad environment variable (commands start the runtime as they are imported)
        _fail(str(e))
    with quiet_native_logs():
        if before_first_op is not None:
            before_first_op()
        tf.constant(0.0) + 1.0  # device initialisation logs happen here
    _runtime_started = True


# ------------------------------------------------------------------------------- running
def run(main: Callable[[list[str]], int | None], *, program: str, doc: str | None,
        before_first_op: Callable[[], object] | None = None, tensorflow: bool = True) -> None:
    """`absl.app.run(main)` with the grouped `--help`, one-line user errors and, when
    `tensorflow`, TensorFlow loaded once the flags parsed and its runtime started (after
    `before_first_op`) before `main`. Flags are those of `absl.flags.FLAGS`, which absl's
    `app.run` parses."""
    flag_values = FLAGS

    def parse(argv: list[str]) -> list[str]:
        if any(arg in HELP_ARGS for arg in argv[1:]):
            sys.stdout.write(help_text(program, doc, flag_values))
            sys.exit(0)
        try:
            parsed = flag_values(argv)
        except flags.Error as e:
            _fail(f"{e} (--help lists the flags)")
        if tensorflow:  # before the work: a signal while it loads ends the command at once ("Signals")
            load_tensorflow()
        return parsed

    def guarded(argv: list[str]) -> int | None:
        try:
            with _work():
                if len(argv) > 1:
                    raise OfaError(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
                if tensorflow:
                    start_runtime(before_first_op)
                elif before_first_op is not None:
                    before_first_op()
                return main(argv)
        except OfaError as e:
            _fail(error_line(str(e), flag_values))
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            _fail(error_line(f"{e.filename}: {e.strerror}" if e.filename else str(e), flag_values))
        except Interrupted as e:  # Ctrl-C / SIGTERM during work that cleans up: it says what was kept
            _stop(str(e), e.exit_code)
        except KeyboardInterrupt:  # Ctrl-C anywhere else
            _stop("interrupted", INTERRUPTED_EXIT)
        except Exception as e:  # out of room while writing (no space, quota, ulimit -f): one line, exit status 2
            problem = space_problem(e)
            if problem is None:
                raise
            why, path = problem
            _fail(error_line(f"{path}: {why}" if path else why, flag_values))
        return None

    app.run(guarded, flags_parser=parse)


@contextlib.contextmanager
def _work() -> Iterator[None]:
    """A command's work: signals become `Interrupted` at safe points (`stop_on_signals`), and
    temporary files go to a private folder, removed at the end. An error raised while a
    signal is pending (a child process that the same Ctrl-C stopped) is the interruption."""
    with stop_on_signals():
        _Outside.began = True  # a signal is now this block's: after it, one waits for the exit's clean-up
        with private_tempdir():
            try:
                yield
            except Exception:
                raise_if_interrupted()
                raise


@contextlib.contextmanager
def private_tempdir() -> Iterator[str]:
    """Within the block Python's temporary files (`tempfile`: TensorFlow's autograph sources,
    the SavedModels conversions stage, tf_keras's) go to a new folder under $TMPDIR, removed
    with whatever is left in it when the block ends, however it ends: an interrupted or
    failed command leaves nothing in $TMPDIR."""
    saved = tempfile.tempdir
    directory = tempfile.mkdtemp(prefix="ofa_tf-")
    tempfile.tempdir = directory
    try:
        yield directory
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(directory, ignore_errors=True)


def print_json(result: Any, output: str | None = None) -> None:
    """Prints a command's result as one JSON line (and writes it to `output` when given)."""
    text = json.dumps(result)
    if output:
        write_text(output, text)
    print(text)


def help_text(program: str, doc: str | None, flag_values: flags.FlagValues = FLAGS) -> str:
    """What `--help` prints: the command's doc, then its own flags by group."""
    text = (doc or f"usage: {program} [--flag=value ...]").strip("\n") + "\n\n"
    text += config_flags.grouped_help(flag_values)
    text += ("\nFlags can also come from a file: --flagfile=FILE (one --flag=value a line).\n"
             "--helpfull also lists absl's own flags.\n")
    return text


def _fail(message: str) -> None:
    _Outside.reported = True
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def _stop(message: str, exit_code: int) -> None:
    _Outside.reported = True
    print(message, file=sys.stderr, flush=True)
    sys.exit(exit_code)


# ------------------------------------------------------------------------ error wording
_NAME_AT_START = re.compile(r"^([A-Za-z_]\w*)(?=[=:]| is )")
_NAME_EQUALS = re.compile(r"(?<![\w-])([A-Za-z_]\w*)=")


def error_line(message: str, flag_values: flags.FlagValues = FLAGS) -> str:
    """One line (newlines joined), worded with the command's flags (`word_as_flags`)."""
    return word_as_flags(" ".join(message.split("\n")).strip(), flag_values)


def word_as_flags(message: str, flag_values: flags.FlagValues = FLAGS) -> str:
    """Words a library message's argument names as the running command's flags.

    The library names arguments without dashes (`epochs=0: expected ...`, `model_dir=X: ...`,
    `model_dir is required`); the command line knows them as flags. A name NAME of one of the
    command's own flags (`config_flags.own_flags`; absl's and TensorFlow's do not count)
    becomes `--NAME`:
    - at the start of the message, before `=`, `:` or ` is ` (the message's subject);
    - elsewhere before `=VALUE` when VALUE is the flag's current value as the message shows
      it (str, repr or comma-joined list): it is what the user passed (or its default). A
      setting quoted with another value, such as a saved run's (`epsilon_ramp_epochs=0.5
      there, 1.0 now`), keeps its plain name.
    A name already preceded by `-` (`--epochs=0`) or by a word character (`max_epochs=`) is
    left alone, so messages already worded as flags come out unchanged.
    """
    own = {flag.name: flag for flag in config_flags.own_flags(flag_values)}

    def at_start(match: re.Match) -> str:
        return "--" + match.group(1) if match.group(1) in own else match.group(1)

    message = _NAME_AT_START.sub(at_start, message, count=1)

    def elsewhere(match: re.Match) -> str:
        name = match.group(1)
        if name in own and _shows_value(message[match.end():], own[name]):
            return f"--{name}="
        return match.group(0)

    return _NAME_EQUALS.sub(elsewhere, message)


def _shows_value(text: str, flag: flags.Flag) -> bool:
    """Whether `text` starts with `flag`'s value, the whole value (`1.0` is not `1.05`)."""
    for shown in _renderings(flag.value):
        if shown and text.startswith(shown) and _value_ends(text[len(shown):]):
            return True
    return False


def _value_ends(rest: str) -> bool:
    if not rest:
        return True
    if rest[0].isalnum() or rest[0] in "_/-":
        return False
    return not (rest[0] == "." and len(rest) > 1 and not rest[1].isspace())  # "0.5." ends; "0.5.1" does not


def _renderings(value: Any) -> list[str]:
    shown = [str(value), repr(value)]
    if isinstance(value, (list, tuple)):
        shown += [",".join(str(v) for v in value), ", ".join(str(v) for v in value)]
    if isinstance(value, bool):
        shown.append(str(value).lower())
    return sorted(set(shown), key=len, reverse=True)
