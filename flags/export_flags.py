"""Flags shared by the latency tools: where to time (host or an Android phone) and how."""

from __future__ import annotations

from absl import flags


def define_latency_flags() -> None:
    """--device, --threads, --op_resolver, --delegate, --adb, --serial, --benchmark_binary, --adb_timeout."""
    if "device" in flags.FLAGS:
        return
    from ofa_tf.export.tflite import OP_RESOLVERS
    from ofa_tf.latency.android import DELEGATES

    flags.DEFINE_enum("device", "host", ["host", "android"], "Time on this machine (LiteRT) or on a phone over adb.")
    flags.DEFINE_integer("threads", 1, "Interpreter threads.")
    flags.DEFINE_enum("op_resolver", "xnnpack", list(OP_RESOLVERS),
                      "Host kernels: xnnpack (LiteRT default), builtin (no default delegate), reference.")
    flags.DEFINE_enum("delegate", "xnnpack", list(DELEGATES), "Android: cpu, xnnpack, gpu or nnapi.")
    flags.DEFINE_string("adb", "adb", "Android: the adb executable.")
    flags.DEFINE_string("serial", None, "Android: device serial when several are attached.")
    flags.DEFINE_string("benchmark_binary", None, "Android: TFLite benchmark_model built for the phone "
                        "(BUILD.md § Android).")
    flags.DEFINE_float("adb_timeout", 300.0, "Android: seconds any adb call may take.")


def android_from_flags():
    """An `AndroidBenchmark` when --device=android (device checked now), else None."""
    if flags.FLAGS.device != "android":
        return None
    from ofa_tf.latency.android import AndroidBenchmark

    runner = AndroidBenchmark(flags.FLAGS.benchmark_binary, flags.FLAGS.adb, flags.FLAGS.serial,
                              flags.FLAGS.adb_timeout)
    runner.check_device()
    return runner
