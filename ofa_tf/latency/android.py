"""Latency on an Android phone: TFLite's `benchmark_model` binary pushed and run over adb.

`AndroidBenchmark` checks for the adb executable and an attached device *before* doing
anything (a missing binary or no device is one clear `OfaError`, never a hang: every adb
call has a timeout), pushes the model and the binary to `/data/local/tmp/ofa_tf`, runs

    benchmark_model --graph=M --num_threads=N --warmup_runs=W --num_runs=R [delegate flags]

and turns its output into the same JSON fields as the host benchmark (`host.py`).
BUILD.md § Android says how to obtain the binary. Times in benchmark_model's output are
microseconds; the JSON holds milliseconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any, Sequence

from ofa_tf.errors import OfaError
from ofa_tf.interrupts import raise_if_interrupted

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
DEVICE_DIR = "/data/local/tmp/ofa_tf"
_NUMBER = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
_TIMINGS = re.compile(r"Inference timings in us: Init: {0}, First inference: {0}, Warmup \(avg\): {0}, "
                      r"Inference \(avg\): {0}".format(_NUMBER))
_RUNS = re.compile(r"(?<!Timings \(microseconds\): )count=(\d+) first=\S+ curr=\S+ min={0} max={0} avg={0} std={0}"
                   .format(_NUMBER))
_PERCENTILES = re.compile(r"p5={0} median={0} p95={0}".format(_NUMBER))
_MEMORY = (re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                      r"init={0} overall={0}".format(_NUMBER)),
           re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: {0}".format(_NUMBER)))


def delegate_flags(delegate: str) -> list[str]:
    """benchmark_model flags selecting `delegate` (cpu = plain built-in kernels)."""
    flags = {"cpu": ["--use_xnnpack=false"], "xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
             "nnapi": ["--use_nnapi=true"]}
    if delegate not in flags:
        raise OfaError(f"delegate={delegate!r}: expected one of {list(DELEGATES)}")
    return flags[delegate]


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """The timings and memory of one benchmark_model run, in ms and MB.

    Works on plain output and on `adb logcat` lines (prefixes are ignored). The steady-
    state statistics come from the last `count=... std=...` line before the summary
    line (the earlier one is the warm-up; op-profiling `Timings (microseconds):` lines
    are not run statistics). benchmark_model prints no p90: `p90_ms` is None and newer
    binaries' p5 / median / p95 are reported instead.

    Raises:
      OfaError: the output has no "Inference timings" line (the run failed); the
        message carries the binary's own error line.
    """
    lines = text.splitlines()
    summary_at = None
    for i, line in enumerate(lines):
        if _TIMINGS.search(line):
            summary_at = i
    if summary_at is None:
        errors = [ln.strip() for ln in lines if re.search(r"ERROR|failed|Failed|not found|No such", ln)]
        detail = errors[0] if errors else (lines[-1].strip() if lines else "no output")
        raise OfaError(f"benchmark_model did not report timings: {detail[:200]}")
    init_us, first_us, warmup_us, avg_us = (float(v) for v in _TIMINGS.search(lines[summary_at]).groups())
    result: dict[str, Any] = {"load_ms": init_us / 1e3, "first_ms": first_us / 1e3, "warmup_mean_ms": warmup_us / 1e3,
                              "mean_ms": avg_us / 1e3, "median_ms": None, "p90_ms": None, "p5_ms": None,
                              "p95_ms": None, "min_ms": None, "max_ms": None, "std_ms": None, "runs": None,
                              "peak_memory_mb": None}
    for line in reversed(lines[:summary_at]):
        runs = _RUNS.search(line)
        if runs:
            count, low, high, _, std = runs.groups()
            result.update(runs=int(count), min_ms=float(low) / 1e3, max_ms=float(high) / 1e3, std_ms=float(std) / 1e3)
            percentiles = _PERCENTILES.search(line)
            if percentiles:
                p5, median, p95 = (float(v) / 1e3 for v in percentiles.groups())
                result.update(p5_ms=p5, median_ms=median, p95_ms=p95)
            break
    for line in lines[summary_at:]:
        for pattern in _MEMORY:
            memory = pattern.search(line)
            if memory:
                result["peak_memory_mb"] = float(memory.groups()[-1])
    return result


class AndroidBenchmark:
    """Runs benchmark_model on an attached phone.

    Args:
      benchmark_binary: path (on this machine) of an Android `benchmark_model` build.
      adb: the adb executable (name on PATH or a path).
      serial: device serial (`adb -s`), needed only when several devices are attached.
      timeout_s: limit of every adb call; a run that exceeds it is an OfaError.
    """

    def __init__(self, benchmark_binary: str, adb: str = "adb", serial: str | None = None,
                 timeout_s: float = 300.0):
        if not 0 < timeout_s < float("inf"):
            raise OfaError(f"adb_timeout={timeout_s}: expected a positive number of seconds")
        self.adb = shutil.which(adb)
        if self.adb is None:
            raise OfaError(f"adb={adb}: adb executable not found (install Android platform-tools, "
                           "see BUILD.md § Android)")
        if not benchmark_binary or not os.path.isfile(benchmark_binary):
            raise OfaError(f"benchmark_binary={benchmark_binary}: no such file (see BUILD.md § Android)")
        self.binary = benchmark_binary
        self.serial = serial
        self.timeout_s = timeout_s
        self._pushed_binary = False

    def _adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        command = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout or self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OfaError(f"adb {' '.join(args[:2])}: no answer within {timeout or self.timeout_s:.0f} s") from None
        raise_if_interrupted()  # a Ctrl-C also stops adb: its failed output is not the device's answer
        return done

    def check_device(self) -> str:
        """The serial of the device to use; OfaError when none (or several, unchosen) is attached."""
        done = self._adb("devices", timeout=30)
        if done.returncode != 0:
            raise OfaError(f"adb devices failed: {(done.stderr or done.stdout).strip()[:200]}")
        devices = {}
        for line in done.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2:
                devices[parts[0]] = parts[1]
        ready = [s for s, state in devices.items() if state == "device"]
        if self.serial:
            if devices.get(self.serial) != "device":
                state = devices.get(self.serial, "not attached")
                raise OfaError(f"serial={self.serial}: Android device is {state}")
            return self.serial
        if not ready:
            others = ", ".join(f"{s} ({state})" for s, state in devices.items())
            raise OfaError("no Android device attached" + (f" (found {others})" if others else "")
                           + "; connect one with USB debugging on, check `adb devices`")
        if len(ready) > 1:
            raise OfaError(f"several Android devices attached ({', '.join(ready)}): choose one with serial=")
        self.serial = ready[0]
        return self.serial

    def _push(self, local: str, remote: str) -> None:
        done = self._adb("push", local, remote)
        if done.returncode != 0:
            raise OfaError(f"adb push {local}: {(done.stderr or done.stdout).strip()[:200]}")

    def run(self, model_path: str, num_threads: int = 1, delegate: str = "xnnpack", warmup: int = 10,
            runs: int = 100, extra_flags: Sequence[str] = ()) -> dict[str, Any]:
        """Pushes `model_path` (and the binary, once), runs it, returns parsed timings."""
        flags = delegate_flags(delegate)
        if not os.path.isfile(model_path):
            raise OfaError(f"{model_path}: no such .tflite file")
        self.check_device()
        remote_binary = f"{DEVICE_DIR}/benchmark_model"
        if not self._pushed_binary:
            self._adb("shell", "mkdir", "-p", DEVICE_DIR, timeout=60)
            self._push(self.binary, remote_binary)
            self._adb("shell", "chmod", "755", remote_binary, timeout=60)
            self._pushed_binary = True
        remote_model = f"{DEVICE_DIR}/{os.path.basename(model_path)}"
        self._push(model_path, remote_model)
        command = [remote_binary, f"--graph={remote_model}", f"--num_threads={num_threads}",
                   f"--warmup_runs={warmup}", f"--num_runs={runs}", *flags, *extra_flags]
        done = self._adb("shell", " ".join(command))
        result = parse_benchmark_output(done.stdout + "\n" + done.stderr)
        return {"backend": "android", "device": self.serial, "threads": num_threads, "delegate": delegate,
                "warmup": warmup, **result}
