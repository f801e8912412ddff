"""Flags of the latency commands (ofa-benchmark-latency, ofa-build-lut): where to time (this
machine or an Android phone over adb) and how."""

from __future__ import annotations

from absl import flags

from ofa_tf.cli.config_flags import FLAGS, definer
from ofa_tf.export import OP_RESOLVERS
from ofa_tf.latency import DELEGATES, AndroidBenchmark

DEVICE = "device"


def define_latency_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--device, --threads, --op_resolver, --delegate, --adb, --serial, --benchmark_binary, --adb_timeout."""
    add = definer(flag_values, DEVICE)
    add("enum", "device", "host", "Time on this machine (LiteRT) or on a phone over adb.",
        enum_values=["host", "android"])
    add("integer", "threads", 1, "Interpreter threads.")
    add("enum", "op_resolver", "xnnpack", "Host kernels: xnnpack (LiteRT default), builtin (no default "
        "delegate), reference.", enum_values=list(OP_RESOLVERS))
    add("enum", "delegate", "xnnpack", "Android: cpu, xnnpack, gpu or nnapi.", enum_values=list(DELEGATES))
    add("string", "adb", "adb", "Android: the adb executable.")
    add("string", "serial", None, "Android: device serial when several are attached.")
    add("string", "benchmark_binary", None, "Android: TFLite benchmark_model built for the phone "
        "(BUILD.md § Android).")
    add("float", "adb_timeout", 300.0, "Android: seconds any adb call may take.")


def android_from_flags(flag_values: flags.FlagValues = FLAGS) -> AndroidBenchmark | None:
    """An `AndroidBenchmark` when --device=android (device checked now), else None."""
    if flag_values.device != "android":
        return None
    runner = AndroidBenchmark(flag_values.benchmark_binary, flag_values.adb, flag_values.serial,
                              flag_values.adb_timeout)
    runner.check_device()
    return runner
