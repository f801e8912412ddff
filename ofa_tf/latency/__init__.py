"""Latency: host (LiteRT) and Android (adb + benchmark_model) benchmarks of `.tflite`
models, and per-resolution latency look-up tables that estimate a subnet's latency from
its ops (as OFA does; docs/deployment.md).

Names load on first use (`ofa_tf.lazy`): `DELEGATES` and `AndroidBenchmark` come without
TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.latency.android": ("AndroidBenchmark", "DELEGATES"),
    "ofa_tf.latency.host": ("benchmark_host",),
    "ofa_tf.latency.lut": ("LatencyTable", "OpSpec"),
})
