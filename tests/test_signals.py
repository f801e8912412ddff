"""Ctrl-C and SIGTERM to every command: one line, exit 130 / 143, nothing left behind.

Every command takes both signals from its first moment (while TensorFlow imports) to its
last, and during its main work stops at a safe point, removes what it staged (in its output
folder and in $TMPDIR) and leaves its outputs as they were. Each tool runs with TMPDIR set to
an empty folder of the test, which must be empty again when it has stopped.

Timing: a signal is sent when the tool shows it has reached the point under test (its
handlers installed, TensorFlow's library loaded, a line on stdout, a file in $TMPDIR),
never after a fixed sleep. In the start-up case every tool reads its flags from a FIFO:
one that nothing writes, so no tool can finish before its signal arrives (tools read their
flags before TensorFlow loads), or one that gives no flag, after which the tool loads
TensorFlow and is signalled while it does.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from helpers import make_run_dir, tiny_space
from ofa_tf.interrupts import Interrupted, raise_if_interrupted, stop_on_signals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
COMMANDS = ("train", "evaluate", "search", "train_predictor", "export", "benchmark_latency", "build_lut", "profile",
            "plot_pareto", "check_data", "import_ofa", "export_ofa", "report")  # every console script (ofa_tf/cli/__init__.py)
NO_TENSORFLOW = ("profile",)


class Tool:
    """A command running as a subprocess with its own empty $TMPDIR; stdout and stderr are
    read as they come, so the test can wait for what the tool prints."""

    STARTED: list[Tool] = []

    def __init__(self, name: str, *args: str, tmp: str):
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", f"ofa_tf.cli.{name}", *args], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**os.environ, "TMPDIR": tmp})
        self.out, self.err = bytearray(), bytearray()
        self._readers = [threading.Thread(target=self._read, args=(pipe, into), daemon=True)
                         for pipe, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()
        Tool.STARTED.append(self)

    @staticmethod
    def _read(pipe, into: bytearray) -> None:
        for chunk in iter(lambda: os.read(pipe.fileno(), 4096), b""):
            into.extend(chunk)

    def wait_for(self, what: str, ready, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.process.poll() is None, (f"ended ({self.process.returncode}) before {what}", self.stderr()[-2000:])
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.02)

    def stop(self, signum: int, timeout: float = 300) -> list[str]:
        """Sends `signum`; returns the stderr lines once the tool has ended with 128 + `signum`,
        having printed no traceback and left its $TMPDIR empty."""
        self.process.send_signal(signum)
        self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)
        assert self.process.returncode == EXIT[signum], (self.process.args, self.process.returncode,
                                                         self.stderr()[-3000:])
        assert "Traceback" not in self.stderr(), self.stderr()[-3000:]
        assert _everything_in(self.tmp) == [], self.process.args
        return self.stderr().strip().splitlines()

    def stdout(self) -> str:
        return self.out.decode(errors="replace")

    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    def caught(self, signum: int) -> bool:
        """Whether the process has a handler for `signum` (/proc/PID/status SigCgt)."""
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return False
        return bool(mask & (1 << (signum - 1)))

    def maps(self, library: str) -> bool:
        """Whether the process has mapped a shared library whose name contains `library`."""
        try:
            with open(f"/proc/{self.process.pid}/maps") as f:
                return library in f.read()
        except OSError:
            return False


@pytest.fixture(autouse=True)
def _no_tool_left_running():
    """A failed assertion leaves no tool of the test running."""
    yield
    while Tool.STARTED:
        tool = Tool.STARTED.pop()
        if tool.process.poll() is None:
            tool.process.kill()
            tool.process.wait()


def _everything_in(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


def _contents(folder) -> dict[str, bytes]:
    contents = {}
    for name in _everything_in(folder):
        path = os.path.join(folder, name)
        contents[name] = open(path, "rb").read() if os.path.isfile(path) else b"<dir>"
    return contents


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained-looking run with an accuracy predictor (fitted to made-up accuracies)."""
    from ofa_tf.search import fit_predictor
    path = make_run_dir(tmp_path_factory.mktemp("signals") / "run")
    space = tiny_space()
    archs = space.sample_distinct(12, 0)
    fit_predictor(space, archs, [random.Random(i).random() for i in range(12)], "linear").save(
        os.path.join(path, "predictor"))
    return path


# ----------------------------------------------------------------------------------- unit
@pytest.mark.unit
def test_a_signal_before_a_nested_block_is_kept_for_it():
    """A command's work runs in `stop_on_signals()` and so may a library call in it (ofa-train's
    `train`): a signal that came before the inner block starts stays pending there."""
    reached, before = [], signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised:
        with stop_on_signals():
            signal.raise_signal(signal.SIGTERM)  # its handler has run when this returns
            with stop_on_signals():
                reached.append("inner")
                raise_if_interrupted()
            reached.append("after the inner block")
    assert reached == ["inner"] and raised.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before  # restored by the outer block only


@pytest.mark.integration
@pytest.mark.parametrize("how", ["library", "command"])
def test_importing_a_command_as_a_library_keeps_python_s_signal_handling(how):
    """Only a program that starts as a command takes the signals at import: a test run or a
    notebook importing a command module (from within a function) keeps Ctrl-C as
    KeyboardInterrupt and SIGTERM's default; a module body importing it (as `python -m` and
    console scripts do) gets the command's handlers. Each in a fresh interpreter, where
    nothing imported ofa_tf.cli.startup before (in this test process something may have)."""
    importing = "import ofa_tf.cli.profile"  # (imports no TensorFlow: a fraction of a second)
    body = f"def load():\n    {importing}\nload()\n" if how == "library" else f"{importing}\n"
    script = body + ("import signal\n"
                     "handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]\n"
                     "print([h.__name__ if callable(h) else signal.Handlers(h).name for h in handlers])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    handlers = done.stdout.strip().splitlines()[-1]
    if how == "library":
        assert handlers == "['default_int_handler', 'SIG_DFL']", handlers
    else:
        assert handlers == "['_on_signal_outside_work', '_on_signal_outside_work']", handlers


@pytest.mark.unit
def test_a_command_s_temporary_files_are_removed_however_it_ends():
    from ofa_tf.cli.startup import private_tempdir
    base = tempfile.gettempdir()
    with pytest.raises(Interrupted):
        with private_tempdir() as directory:
            assert os.path.dirname(directory) == base and tempfile.gettempdir() == directory
            tempfile.mkdtemp()
            tempfile.NamedTemporaryFile(delete=False).close()  # as autograph leaves its sources
            assert len(os.listdir(directory)) == 2
            raise Interrupted(signal.SIGINT)
    assert not os.path.exists(directory) and tempfile.gettempdir() == base


@pytest.mark.unit
def test_an_error_while_a_signal_is_pending_is_the_interruption():
    """A Ctrl-C also stops a command's child process (adb), whose failure then surfaces as an
    error: the command reports the interruption (130), not the error (2)."""
    from ofa_tf.cli import startup
    from ofa_tf.errors import OfaError
    with pytest.raises(Interrupted) as raised:
        with startup._work():
            signal.raise_signal(signal.SIGINT)  # its handler has run when this returns
            raise OfaError("adb shell: no answer")
    assert raised.value.exit_code == 130
    with pytest.raises(OfaError):  # with no signal, the error is the error
        with startup._work():
            raise OfaError("adb shell: no answer")


@pytest.mark.unit
def test_a_stopped_search_leaves_no_folder_and_clears_what_killed_searches_left(tmp_path):
    """A search stopped before it publishes removes the output folder it created (and its
    parents); one killed outright leaves its staging folder, which the next search removes
    when its pid no longer runs on this host (a running pid's, or another host's, stay)."""
    from ofa_tf.cli import search

    output = tmp_path / "new" / "search"
    with pytest.raises(Interrupted):
        with search._result_set(str(output)) as stage:
            search._write_json(stage("a.json"), str(output / "a.json"), {"a": 1})
            assert os.listdir(output)[0].startswith(f".tmp-search-{search._host()}-{os.getpid()}-")
            raise Interrupted(signal.SIGINT)
    assert os.listdir(tmp_path) == []  # neither search/ nor new/, which it created

    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()  # its pid runs nothing now
    output.mkdir(parents=True)
    names = {"killed": f".tmp-search-{search._host()}-{ended.pid}-0123abcd",
             "running": f".tmp-search-{search._host()}-{os.getpid()}-0123abcd",
             "elsewhere": f".tmp-search-not-{search._host()}-{ended.pid}-0123abcd"}
    for name in names.values():
        (output / name).mkdir()
        (output / name / "a.json").write_text("{}")
    with search._result_set(str(output)) as stage:
        search._write_json(stage("a.json"), str(output / "a.json"), {"a": 2})
    assert sorted(os.listdir(output)) == sorted(["a.json", names["running"], names["elsewhere"]])
    assert json.loads((output / "a.json").read_text()) == {"a": 2}


# ---------------------------------------------------------------------------- integration
@pytest.mark.integration
def test_a_signal_while_any_command_starts_ends_it_with_one_line(tmp_path):
    """SIGINT and SIGTERM to every command while it reads its flags, and (but ofa-profile,
    which does not load it) while TensorFlow loads, which it does once the flags parsed:
    one line, exit 130 / 143, no traceback, nothing in $TMPDIR."""
    def one(case):
        name, signum, moment = case
        fifo = str(tmp_path / f"flags-{name}-{signum}-{moment}")
        os.mkfifo(fifo)  # a tool reading its flags waits here until something writes it
        tool = Tool(name, f"--flagfile={fifo}", tmp=str(tmp_path / f"tmp-{name}-{signum}-{moment}"))
        tool.wait_for("signal handlers", lambda: tool.caught(signal.SIGTERM), timeout=300)
        if moment == "tensorflow":
            with open(fifo, "w"):  # no flag: the tool goes on to load TensorFlow
                pass
            tool.wait_for("TensorFlow loading", lambda: tool.maps("libtensorflow"), timeout=300)
        return name, signum, moment, tool.stop(signum, timeout=300)

    cases = [(name, signum, moment) for name in COMMANDS for signum in EXIT for moment in ("flags", "tensorflow")
             if moment == "flags" or name not in NO_TENSORFLOW]
    # two at a time: each imports TensorFlow, and more than the cores would only slow each down
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for name, signum, moment, lines in pool.map(one, cases):
            assert lines == [f"interrupted by {signal.Signals(signum).name}"], (name, moment, lines)


@pytest.mark.integration
def test_a_search_stopped_between_targets_leaves_the_previous_results(run_dir, tmp_path):
    output = tmp_path / "search"
    output.mkdir()
    previous = {"flops-12M.json": b'{"arch": "previous"}', "summary.json": b'{"results": "previous"}'}
    for name, data in previous.items():
        (output / name).write_bytes(data)
    # The second target must still be searching when the signal lands, however loaded the
    # machine. Both targets run the same generations, so they differ in cost per generation:
    # with every child a mutant of every choice, a loose budget (100k MACs: every subnet of
    # the tiny space) takes each child at its first try, while one at the smallest subnet
    # (53k) rejects nearly every mutant and redraws it up to 100 times, many times slower. The
    # first target ends in seconds; the second would take minutes, and stops within one
    # generation of the signal.
    tool = Tool("search", f"--model_dir={run_dir}", "--flops=100k,53k", "--measure=false", "--generations=300",
                "--mutation_ratio=1", "--mutation_prob=1", f"--output_dir={output}", tmp=str(tmp_path / "tmp"))
    tool.wait_for("the first target", lambda: "flops-100k.json: macs" in tool.stdout())
    lines = tool.stop(signal.SIGINT)
    assert lines == [f"interrupted after 1 of 2 targets; --output_dir={output} is unchanged"]
    assert _contents(output) == previous  # no new file, no staging folder


@pytest.mark.integration
def test_an_export_stopped_while_converting_writes_nothing(run_dir, tmp_path):
    output = tmp_path / "exports"
    output.mkdir()
    (output / "min.tflite").write_bytes(b"a previous export")
    tmp = str(tmp_path / "tmp")
    tool = Tool("export", f"--model_dir={run_dir}", "--arch=min", f"--output={output}/min.tflite",
                "--formats=tflite,keras", "--eval_images=64", tmp=tmp)
    tool.wait_for("the conversion's SavedModel", lambda: any("ofa_tf_export_" in p for p in _everything_in(tmp)))
    lines = tool.stop(signal.SIGTERM)
    assert lines == ["interrupted; no file of the export was written"]
    assert _contents(output) == {"min.tflite": b"a previous export"}


@pytest.mark.integration
def test_an_evaluation_stopped_between_subnets_writes_nothing(run_dir, tmp_path):
    output = tmp_path / "results"
    output.mkdir()
    tool = Tool("evaluate", f"--model_dir={run_dir}", "--archs=max", "--num_random=40",
                f"--output={output}/eval.json", tmp=str(tmp_path / "tmp"))
    tool.wait_for("the first subnet", lambda: "accuracy:" in tool.stdout())
    assert tool.stop(signal.SIGTERM) == ["interrupted by SIGTERM"]
    assert _everything_in(output) == []


@pytest.mark.integration
def test_a_latency_table_stopped_while_building_writes_nothing(run_dir, tmp_path):
    output = tmp_path / "luts"
    output.mkdir()
    tmp = str(tmp_path / "tmp")
    tool = Tool("build_lut", f"--model_dir={run_dir}", f"--output={output}/lut.json", "--rounds=5", tmp=tmp)
    tool.wait_for("an op's conversion", lambda: any("ofa_tf_export_" in p for p in _everything_in(tmp)))
    assert tool.stop(signal.SIGINT) == ["interrupted by SIGINT"]
    assert _everything_in(output) == []


@pytest.mark.integration
def test_a_predictor_stopped_while_measuring_keeps_what_it_measured(run_dir, tmp_path):
    output = tmp_path / "predictor"
    measurements = output / "measurements.json"
    from ofa_tf.cli.train_predictor import SAVE_EVERY

    tool = Tool("train_predictor", f"--model_dir={run_dir}", f"--output_dir={output}", "--num_archs=1000",
                "--eval_images=64", "--bn_calibration_images=16", tmp=str(tmp_path / "tmp"))  # far from done
    tool.wait_for("the first saved measurements", measurements.exists)
    lines = tool.stop(signal.SIGTERM)
    kept = len(json.loads(measurements.read_text())["results"])
    assert 0 < kept < 1000 and kept % SAVE_EVERY == 0 and _everything_in(output) == ["measurements.json"]
    assert lines == [f"interrupted with {kept} of 1000 subnets measured (kept in {measurements}); re-run the "
                     "same command to measure the rest"]


def _lock_holder(run_dir) -> int | None:
    """The pid in a run directory's lock file (tests/test_run_names.py's way to see a run start)."""
    try:
        return json.loads((run_dir / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.integration
def test_a_run_stopped_by_sigterm_while_its_first_step_traces_keeps_nothing(tmp_path):
    """SIGTERM to ofa-train once it holds its directory's lock (its data and model are built,
    its first step about to trace): exit 143, one line, and the run directory it created and
    its $TMPDIR are gone. ofa-train's other points are tested where their runs are: Ctrl-C
    after the lock and after a checkpoint (test_distribute.py::
    test_ctrl_c_and_a_second_run_into_a_busy_directory), Ctrl-C before the first new
    checkpoint of a resumed run (test_run_names.py::
    test_a_run_named_with_wildcards_resumes_refuses_evaluates_and_survives_ctrl_c), both
    signals while it starts (test_a_signal_while_any_command_starts_ends_it_with_one_line)."""
    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    run_dir = tmp_path / "run"
    tool = Tool("train", "--method=deps", f"--space={space}", f"--dataset=npz:{DEMO}", "--image_size=16",
                "--epochs=1", "--steps_per_epoch=1000", "--batch_size=16", "--num_subnets=1",  # no checkpoint soon
                "--epsilon_ramp_epochs=0.5", "--bn_calibration_images=16", f"--model_dir={run_dir}",
                tmp=str(tmp_path / "tmp"))
    tool.wait_for("the run's lock", lambda: _lock_holder(run_dir) == tool.process.pid)
    lines = tool.stop(signal.SIGTERM)
    assert len(lines) == 1 and re.fullmatch(r"interrupted at step \d+, before the first checkpoint; nothing was kept",
                                            lines[0]), lines
    assert not run_dir.exists()
