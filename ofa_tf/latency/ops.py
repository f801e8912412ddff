"""Building latency tables: each op as a small stand-alone model, converted and timed.

The op models are cut from a `Supernet` of the space with its own static twins (the
same layers `Supernet.get_subnet` emits), so an op model runs exactly the TFLite ops the
op contributes to an exported subnet. Weights do not matter for float latency; they are
the supernet's initial ones. Ctrl-C / SIGTERM (`ofa_tf.interrupts`) stop a build between
models (conversions check as they return; timing checks between rounds); the table is
written only by the caller, once complete.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Sequence

import keras
import numpy as np

from ofa_tf.export.tflite import keras_to_tflite
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.latency.android import AndroidBenchmark
from ofa_tf.latency.host import time_interleaved
from ofa_tf.latency.lut import LatencyTable, OpSpec, distinct_op_specs
from ofa_tf.layers.base import static_activation
from ofa_tf.models import Supernet
from ofa_tf.spaces import Arch, SearchSpace


def op_model(supernet: Supernet, op: OpSpec) -> keras.Model:
    """A Keras model computing `op` alone (batch 1)."""
    sp = supernet.space
    inputs = keras.Input(op.in_shape, batch_size=1, name="x")
    x = inputs
    if op.kind == "stem":
        x = supernet.stem_conv.to_static(x.shape, out_channels=op.out_shape[-1])(x)
        x = supernet.stem_bn.to_static(x.shape)(x)
        x = static_activation(sp.stem_activation, "stem_act")(x)
    elif op.kind == "block":
        block = supernet.stages[op.stage].blocks[op.index]
        x = block.apply_static(x, kernel_size=op.kernel, mid_channels=op.mid_channels,
                               out_channels=op.out_shape[-1], se_channels=op.se_channels or None)
    elif op.kind == "final_expand":
        x = supernet.final_expand_conv.to_static(x.shape, out_channels=op.out_shape[-1])(x)
        x = supernet.final_expand_bn.to_static(x.shape)(x)
        x = static_activation(sp.head_activation, "final_expand_act")(x)
    elif op.kind == "head":  # as the tail of Supernet.get_subnet
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
        if op.mid_channels:
            x = supernet.head_conv.to_static(x.shape, out_channels=op.mid_channels)(x)
            x = static_activation(sp.head_activation, "head_act")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = supernet.classifier.to_static(x.shape)(x)
    else:
        raise ValueError(f"unknown op kind {op.kind!r}")
    return keras.Model(inputs, x, name=op.kind)


def overhead_model(channels: int = 8) -> keras.Model:
    """A model that does almost nothing (one ReLU on 8 numbers): its latency is the
    per-invocation cost every stand-alone op model pays once."""
    inputs = keras.Input((1, 1, channels), batch_size=1)
    return keras.Model(inputs, keras.layers.ReLU()(inputs), name="overhead")


def convert_ops(supernet: Supernet, ops: Sequence[OpSpec], quantize: str = "none",
                progress: Callable[[int], Any] | None = None) -> list[bytes]:
    """`.tflite` bytes of every op model (float32 unless `quantize` is float16/dynamic).

    Full-int8 tables would need a representative set per op; they are not built here."""
    models = []
    for op in ops:
        raise_if_interrupted()  # before building the op's layers
        models.append(keras_to_tflite(op_model(supernet, op), quantize))
        if progress:
            progress(1)
    return models


def stats(times_ms: np.ndarray) -> dict[str, float]:
    """A table entry: count / mean / std / median in ms."""
    t = np.asarray(times_ms, np.float64)
    return {"count": int(t.size), "mean": float(t.mean()), "std": float(t.std()), "median": float(np.median(t))}


def calibration_archs(space: SearchSpace, resolution: int, count: int, seed: int = 1) -> list[Arch]:
    """Whole subnets a table is calibrated on: the max and min subnets, then random ones
    (seed 1, apart from the seed-0 subnets benchmarks/lut_accuracy.py scores the table on)."""
    extremes = [space.max_arch(resolution), space.min_arch(resolution)][:count]
    return extremes + space.sample_distinct(count - len(extremes), seed, resolution, exclude=extremes)


def build_table(space: SearchSpace, num_classes: int, resolutions: Sequence[int], num_threads: int = 1,
                op_resolver: str = "xnnpack", rounds: int = 200, runs_per_round: int = 1,
                android: AndroidBenchmark | None = None, verbose: bool = True,
                num_calibration_archs: int = 8, delegate: str = "xnnpack",
                block_class: type | None = None) -> LatencyTable:
    """Times every distinct op of `space` at each resolution (host LiteRT, or a phone when
    `android` is given, with its `delegate`), then calibrates each resolution's table on
    `num_calibration_archs` whole subnets timed end to end (0: no calibration). The blocks
    are `block_class`'s (a run's own block: another activation costs other time).

    On the host the op models are timed round-robin: by default each is invoked once per
    round (`runs_per_round=1`) over `rounds` rounds, so between two timed runs of an op the
    other ops ran, as inside a whole model where the rest of the network passes through
    the caches between two runs of any one layer. Timed back-to-back instead, an op keeps
    its weights in the per-core cache and the raw sums came out at ~0.55 of whole-model
    latency, with worse ranking (docs/deployment.md has the figures). Whole subnets are
    timed as ofa-benchmark-latency times a model: consecutive runs, median.
    """
    supernet = Supernet(space, num_classes, block_class=block_class)
    supernet.build()
    tables = {}
    for resolution in resolutions:
        space.parse_arch("max", resolution=resolution)  # OfaError for a resolution outside the space
        ops = distinct_op_specs(space, resolution, num_classes)
        calibration = calibration_archs(space, resolution, num_calibration_archs)
        bar = keras.utils.Progbar(len(ops) + 1 + len(calibration), unit_name="model") if verbose else None
        if bar:
            print(f"resolution {resolution}: converting {len(ops)} ops and {len(calibration)} whole subnets "
                  "for calibration", flush=True)
        models = convert_ops(supernet, ops, progress=bar.add if bar else None)
        models.append(keras_to_tflite(overhead_model()))
        if bar:
            bar.add(1)
        whole = []
        for arch in calibration:
            raise_if_interrupted()  # before extracting the subnet's layers
            whole.append(keras_to_tflite(supernet.get_subnet(arch)))
            if bar:
                bar.add(1)
        if verbose:
            print(f"resolution {resolution}: timing", flush=True)
        if android is None:
            entries = [stats(t) for t in time_interleaved(models, num_threads, op_resolver, rounds, runs_per_round)]
            measured = [stats(t) for t in time_interleaved(whole, num_threads, op_resolver, 20, 10)] if whole else []
        else:
            entries = _time_on_android(android, models, num_threads, rounds * runs_per_round, verbose, delegate)
            measured = _time_on_android(android, whole, num_threads, 200, verbose, delegate) if whole else []
        tables[resolution] = {"overhead_ms": entries[-1]["mean"],
                              "ops": {op.key: entry for op, entry in zip(ops, entries[:-1])}}
        if calibration:
            tables[resolution]["calibration"] = _calibration(space, num_classes, resolution, tables[resolution],
                                                             calibration, measured)
    settings = {"threads": num_threads, "op_resolver": op_resolver if android is None else None,
                "delegate": delegate if android is not None else None,
                "runs": rounds * runs_per_round, "rounds": rounds, "runs_per_round": runs_per_round,
                "quantize": "none", "calibration_archs": num_calibration_archs}
    device = "host" if android is None else f"android:{android.serial}"
    return LatencyTable(space, num_classes, tables, device, settings)


def _calibration(space: SearchSpace, num_classes: int, resolution: int, table: dict[str, Any],
                 archs: Sequence[Arch], measured: Sequence[dict[str, float]]) -> dict[str, Any]:
    """The calibration record of one resolution: per statistic, the median ratio of the
    whole subnets' measured latency to the table's raw sum for them."""
    raw_table = LatencyTable(space, num_classes, {resolution: table})
    record: dict[str, Any] = {"archs": [a.to_dict() for a in archs], "scale": {}, "raw_ms": {}, "measured_ms": {}}
    for statistic in ("mean", "median"):
        raw = np.array([raw_table.predict_ms(a, statistic, calibrated=False) for a in archs])
        seen = np.array([m[statistic] for m in measured])
        record["scale"][statistic] = float(np.median(seen / raw))
        record["raw_ms"][statistic] = raw.tolist()
        record["measured_ms"][statistic] = seen.tolist()
    return record


def _time_on_android(android: AndroidBenchmark, models: Sequence[bytes], num_threads: int, runs: int,
                     verbose: bool, delegate: str = "xnnpack") -> list[dict[str, float]]:
    android.check_device()
    bar = keras.utils.Progbar(len(models), unit_name="op") if verbose else None
    entries = []
    with tempfile.TemporaryDirectory() as directory:
        for i, model in enumerate(models):
            raise_if_interrupted()
            path = os.path.join(directory, f"op{i:04d}.tflite")
            with open(path, "wb") as f:
                f.write(model)
            result = android.run(path, num_threads=num_threads, delegate=delegate, runs=runs)
            entries.append({"count": result["runs"] or runs, "mean": result["mean_ms"], "std": result["std_ms"],
                            "median": result["median_ms"]})
            if bar:
                bar.add(1)
    return entries
