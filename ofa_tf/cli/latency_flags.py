"""Flags of the latency commands (ofa-benchmark-latency, ofa-build-lut): where to time (this
machine or an Android phone over adb) and how."""

from __future__ import annotations

from absl import flags

from ofa_tf.cli import flag_checks
from ofa_tf.cli.config_flags import FLAGS, definer
from ofa_tf.export.interpreter import OP_RESOLVERS  # (these two modules import no TensorFlow)
from ofa_tf.latency.android import DELEGATES, AndroidBenchmark

DEVICE = "device"
ANDROID_ONLY = ("delegate", "adb", "serial", "benchmark_binary", "adb_timeout")
HOST_ONLY = ("op_resolver",)


def define_latency_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--device, --threads, --op_resolver, --delegate, --adb, --serial, --benchmark_binary, --adb_timeout."""
    add = definer(flag_values, DEVICE)
    add("enum", "device", "host", "Time on this machine (LiteRT) or on a phone over adb.",
        enum_values=["host", "android"])
    add("integer", "threads", 1, "Interpreter threads.")
    add("enum", "op_resolver", "xnnpack", "Host kernels: xnnpack (LiteRT default), builtin (no default "
        "delegate), reference.", enum_values=list(OP_RESOLVERS))
    add("enum", "delegate", "xnnpack", "Android: cpu, xnnpack, gpu or nnapi.", enum_values=list(DELEGATES))
    add("string", "adb", "adb", "Android: the adb executable.", path="input")
    add("string", "serial", None, "Android: device serial when several are attached.")
    add("string", "benchmark_binary", None, "Android: TFLite benchmark_model built for the phone "
        "(BUILD.md § Android).", path="input")
    add("float", "adb_timeout", 300.0, "Android: seconds any adb call may take.")


def check_latency_flags(flag_values: flags.FlagValues = FLAGS) -> AndroidBenchmark | None:
    """The device flags checked before any work: counts and ranges, a flag of the other
    device given (accepted and ignored otherwise: an error), and for --device=android the adb
    executable and the benchmark binary (`AndroidBenchmark`, without contacting the phone).
    Returns the `AndroidBenchmark` for --device=android, else None."""
    flag_checks.positive("threads", flag_values.threads)
    flag_checks.positive("adb_timeout", flag_values.adb_timeout)
    android = flag_values.device == "android"
    flag_checks.input_path("benchmark_binary", flag_values.benchmark_binary)
    flag_checks.only_with(flag_values, ANDROID_ONLY, android, "--device=android")
    flag_checks.only_with(flag_values, HOST_ONLY, not android, "--device=host")
    if not android:
        return None
    return AndroidBenchmark(flag_values.benchmark_binary, flag_values.adb, flag_values.serial,
                            flag_values.adb_timeout)
