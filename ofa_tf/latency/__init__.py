"""Latency: host (LiteRT) and Android (adb + benchmark_model) benchmarks of `.tflite`
models, and per-resolution latency look-up tables that estimate a subnet's latency from
its ops (as OFA does; docs/deployment.md)."""

from ofa_tf.latency.android import DELEGATES, AndroidBenchmark, parse_benchmark_output
from ofa_tf.latency.host import benchmark_host, summarize_ms, time_interleaved
from ofa_tf.latency.lut import LatencyTable, OpSpec, distinct_op_specs, op_specs

__all__ = ["AndroidBenchmark", "DELEGATES", "LatencyTable", "OpSpec", "benchmark_host", "distinct_op_specs",
           "op_specs", "parse_benchmark_output", "summarize_ms", "time_interleaved"]
