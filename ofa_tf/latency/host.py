"""Latency of `.tflite` models on this machine with the LiteRT interpreter.

The same JSON fields as the Android runner (`android.py`) so results from both compare
directly: median / p90 / min / mean / std of steady-state runs in ms, model load time
(interpreter creation + tensor allocation) and peak memory. Peak memory is the growth of
the process's resident-set high-water mark while the model loads and runs (Linux
`/proc/self/status` VmHWM, reset first through `/proc/self/clear_refs`), the analogue of
benchmark_model's "memory footprint delta"; `None` where the kernel does not offer it.
Ctrl-C / SIGTERM (`ofa_tf.interrupts`) are checked between runs, outside the timed calls.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.export.interpreter import make_interpreter
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.native_logs import quiet_native_logs


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def summarize_ms(times_ms: np.ndarray) -> dict[str, float]:
    """median / p90 / min / mean / std of per-run times in ms."""
    t = np.asarray(times_ms, np.float64)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
            "mean_ms": float(t.mean()), "std_ms": float(t.std())}


def random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape = [1 if d < 0 else int(d) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def benchmark_host(model: str | bytes, num_threads: int = 1, warmup: int = 10, runs: int = 100,
                   op_resolver: str = "xnnpack", seed: int = 0) -> dict[str, Any]:
    """Times `runs` invocations of a `.tflite` model (path or bytes) after `warmup` ones.

    Returns:
      {"backend": "host", "threads", "op_resolver", "runs", "warmup", "load_ms", "first_ms",
       "median_ms", "p90_ms", "min_ms", "mean_ms", "std_ms", "peak_memory_mb"}
    """
    for name, value, low in (("num_threads", num_threads, 1), ("warmup", warmup, 0), ("runs", runs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OfaError(f"{name}={value!r}: expected an integer >= {low}")
    rss_before = _status_kb("VmRSS")
    can_track = _reset_peak_rss() and rss_before is not None
    started = time.perf_counter()
    interpreter = make_interpreter(model, num_threads, op_resolver)
    with quiet_native_logs():
        interpreter.allocate_tensors()
    load_ms = (time.perf_counter() - started) * 1e3
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(detail, rng))
    started = time.perf_counter()
    interpreter.invoke()
    first_ms = (time.perf_counter() - started) * 1e3
    for _ in range(warmup):
        raise_if_interrupted()
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        raise_if_interrupted()
        started = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - started
    peak = _status_kb("VmHWM") if can_track else None
    return {"backend": "host", "threads": num_threads, "op_resolver": op_resolver, "runs": runs, "warmup": warmup,
            "load_ms": load_ms, "first_ms": first_ms, **summarize_ms(times * 1e3),
            "peak_memory_mb": None if peak is None else max(0, peak - rss_before) / 1024}


def time_interleaved(models: Sequence[str | bytes], num_threads: int = 1, op_resolver: str = "xnnpack",
                     rounds: int = 20, runs_per_round: int = 10, warmup: int = 10,
                     progress: Callable[[int], Any] | None = None) -> list[np.ndarray]:
    """Per-run times (ms) of several models, timed in `rounds` interleaved passes.

    On a shared, noisy machine a slow spell then spreads over all models instead of
    inflating whichever model happened to be timed during it, which keeps their
    *relative* latencies (what a look-up table and a ranking need) trustworthy.
    """
    rng = np.random.default_rng(0)
    interpreters = []
    for model in models:
        raise_if_interrupted()
        interpreter = make_interpreter(model, num_threads, op_resolver)
        with quiet_native_logs():
            interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], random_input(detail, rng))
        for _ in range(warmup):
            interpreter.invoke()
        interpreters.append(interpreter)
    times = [np.empty(rounds * runs_per_round) for _ in models]
    for r in range(rounds):
        raise_if_interrupted()
        for m, interpreter in enumerate(interpreters):
            for i in range(runs_per_round):
                started = time.perf_counter()
                interpreter.invoke()
                times[m][r * runs_per_round + i] = (time.perf_counter() - started) * 1e3
        if progress:
            progress(r)
    return times
