"""TFLite export of a trained run's subnets: accuracy per quantisation mode and host latency, as JSON.

  python benchmarks/export_accuracy.py --model_dir=runs/compare/deps [--out_dir=runs/export/bench]

(or `python -m benchmarks.export_accuracy ...`, from a checkout with ofa_tf installed.)

For the max and min subnets (BN-recalibrated) and every mode (none, float16, dynamic,
int8, qat) it exports with `ofa_tf.export.export_subnet` and reports, on the test split,
Keras vs TFLite accuracy, their top-1 agreement and max |logit difference|. Then it times
the float32 and int8 models of the max, a mid and the min subnet on this machine (LiteRT,
interleaved rounds, both the XNNPACK and the built-in op resolvers) and reports whether
the latency order is max > mid > min and the float32 / int8 speed ratio. Exports already
in --out_dir (same arch and mode, metadata beside) are reused, so an interrupted run resumes.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.export import ExportOptions, export_subnet
from ofa_tf.export.options import FLOAT16_MAX_DIFF  # noqa: E402
from ofa_tf.export.float16 import FLOAT16_CHECK_IMAGES, FLOAT16_MARGIN  # noqa: E402
from ofa_tf.latency.host import summarize_ms, time_interleaved  # noqa: E402
from ofa_tf.runs import RunDirectory  # noqa: E402
from ofa_tf.spaces import Arch  # noqa: E402

MODES = ("none", "float16", "dynamic", "int8", "qat")

flags.DEFINE_string("model_dir", None, "Required: the trained run directory whose subnets are exported.")
flags.DEFINE_string("out_dir", "runs/export/bench", "Where the exports and export_accuracy.json go.")
flags.DEFINE_string("modes", ",".join(MODES), "Quantisation modes, comma-separated.")
flags.DEFINE_integer("qat_epochs", 2, "QAT fine-tuning epochs.")
flags.DEFINE_integer("qat_steps_per_epoch", 200, "QAT steps per epoch.")
flags.DEFINE_float("qat_distillation", 0.0, "QAT loss weight of distillation from the float subnet (the rest: "
                   "label loss).")
flags.DEFINE_string("int8_calibration", "mse", "Full-int8 activation ranges: mse or minmax.")
flags.DEFINE_float("float16_max_diff", FLOAT16_MAX_DIFF, "float16 bound on max |logit diff| from float32 (0: every "
                   "weight float16).")
flags.DEFINE_integer("rounds", 20, "Interleaved timing rounds.")
flags.DEFINE_integer("runs_per_round", 10, "Timed runs of each model per round.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_integer("quick_eval_images", 2000, "Test images for the mid subnet (timed only) and float16 (checked "
                     "for logit drift).")
FLAGS = flags.FLAGS


def mid_arch(space, resolution: int) -> Arch:
    """The middle choice of every elastic dimension."""
    mid = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    depths = [mid(s.depths) for s in space.stages]
    return space.validate(Arch.from_dict({
        "resolution": resolution, "stem_width": mid(space.stem_widths), "widths": [mid(s.widths) for s in space.stages],
        "depths": depths, "kernels": [[mid(s.kernels)] * d for s, d in zip(space.stages, depths)],
        "expands": [[mid(s.expands)] * d for s, d in zip(space.stages, depths)],
        "head_width": mid(space.head_widths) if space.head_widths else 0}))


def _previous(output: str, arch: Arch, mode: str, int8_calibration: str, float16_max_diff: float,
              qat: dict[str, float]) -> dict | None:
    """The metadata of an earlier export of `arch` in `mode` (same int8 calibration / float16
    bound / QAT settings) at `output`, if there is one."""
    path = output[: -len(".tflite")] + ".json"
    if not (os.path.isfile(path) and os.path.isfile(output)):
        return None
    with open(path) as f:
        meta = json.load(f)
    if meta.get("arch") != arch.to_dict() or meta.get("quantize") != mode:
        return None
    if mode == "int8" and meta.get("int8_calibration", "minmax") != int8_calibration:
        return None
    if mode == "qat" and any((meta.get("qat") or {}).get(key) != value for key, value in qat.items()):
        return None
    if mode == "float16":  # same bound, fitted the same way (check images, margin)
        check = meta.get("float16") or {}
        if float16_max_diff and (check.get("max_abs_diff_bound") != float16_max_diff
                                 or check.get("fit_target") != float16_max_diff * FLOAT16_MARGIN
                                 or check.get("check_images") != FLOAT16_CHECK_IMAGES):
            return None
        if not float16_max_diff and meta.get("float16") is not None:
            return None
    return meta


def main(argv: list[str]) -> None:
    args = FLAGS
    if not args.model_dir:
        raise OfaError("--model_dir is required: a trained run directory")
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.time()
    supernet, _ = RunDirectory(args.model_dir).load_supernet()
    resolution = max(supernet.space.resolutions)
    archs = {"max": supernet.space.max_arch(resolution), "mid": mid_arch(supernet.space, resolution),
             "min": supernet.space.min_arch(resolution)}
    del supernet
    qat = {"epochs": args.qat_epochs, "steps_per_epoch": args.qat_steps_per_epoch,
           "distillation": args.qat_distillation}
    requested = args.modes.split(",")
    modes = [m for m in requested if m in MODES and m != "qat"] + (["qat"] if "qat" in requested else [])
    accuracy, files = {}, {}  # qat last: importing tfmot flips tf.keras for the process
    for mode in modes:
        for name in (("max", "mid", "min") if mode in ("none", "int8") else ("max", "min")):
            output = os.path.join(args.out_dir, f"{name}_{mode}.tflite")
            # resume: an earlier run's export of the same thing
            meta = _previous(output, archs[name], mode, args.int8_calibration, args.float16_max_diff, qat)
            if meta is None:
                options = ExportOptions(
                    quantize=mode, split="test", qat_epochs=args.qat_epochs,
                    int8_calibration=args.int8_calibration, float16_max_diff=args.float16_max_diff,
                    qat_steps_per_epoch=args.qat_steps_per_epoch, qat_distillation=args.qat_distillation, verbose=0,
                    eval_images=args.quick_eval_images if (name == "mid" or mode == "float16") else None)
                meta = export_subnet(args.model_dir, archs[name].to_dict(), output, options)
            files[(name, mode)] = output
            accuracy.setdefault(name, {})[mode] = {**meta["accuracy"], "tflite_bytes": meta["tflite_bytes"],
                                                   "export_seconds": meta["export_seconds"]}
            if mode == "qat":
                accuracy[name][mode]["qat"] = meta["qat"]
            print(f"{name} {mode}: {json.dumps(accuracy[name][mode])}", file=sys.stderr, flush=True)

    checks = {}
    for name, per_mode in accuracy.items():
        base = per_mode.get("none", {}).get("keras_accuracy")
        if "int8" in per_mode:
            checks[f"{name}_int8_top1_agreement"] = per_mode["int8"]["top1_agreement"]
            checks[f"{name}_int8_accuracy_drop_points"] = 100 * (base - per_mode["int8"]["tflite_accuracy"])
        if "qat" in per_mode and "int8" in per_mode:
            checks[f"{name}_qat_minus_ptq_int8_points"] = 100 * (per_mode["qat"]["tflite_accuracy"]
                                                                 - per_mode["int8"]["tflite_accuracy"])
        if "none" in per_mode:
            checks[f"{name}_float32_max_abs_diff"] = per_mode["none"]["max_abs_logit_diff"]
        if "float16" in per_mode:
            checks[f"{name}_float16_max_abs_diff"] = per_mode["float16"]["max_abs_logit_diff"]

    latency = {}
    timed = [(n, m) for n in ("max", "mid", "min") for m in ("none", "int8") if (n, m) in files]
    for resolver in ("xnnpack", "builtin"):
        times = time_interleaved([files[k] for k in timed], args.threads, resolver, args.rounds, args.runs_per_round)
        stats = {f"{n}_{m}": summarize_ms(t) for (n, m), t in zip(timed, times)}
        median = {k: v["median_ms"] for k, v in stats.items()}
        result = {"stats": stats}
        if all(f"{n}_none" in median for n in ("max", "mid", "min")):
            result["float32_order_max_gt_mid_gt_min"] = median["max_none"] > median["mid_none"] > median["min_none"]
        if all(f"{n}_int8" in median for n in ("max", "mid", "min")):
            result["int8_order_max_gt_mid_gt_min"] = median["max_int8"] > median["mid_int8"] > median["min_int8"]
        result["float32_over_int8"] = {n: median[f"{n}_none"] / median[f"{n}_int8"] for n in ("max", "mid", "min")
                                       if f"{n}_none" in median and f"{n}_int8" in median}
        result["noise_cv_median"] = float(np.median([t.std() / t.mean() for t in times]))
        latency[resolver] = result
    report = {"model_dir": args.model_dir, "resolution": resolution, "split": "test",
              "archs": {k: v.to_dict() for k, v in archs.items()}, "checks": checks, "accuracy": accuracy,
              "latency_host": {"threads": args.threads, "runs": args.rounds * args.runs_per_round, **latency},
              "seconds": round(time.time() - started, 1)}
    text = json.dumps(report)
    with open(os.path.join(args.out_dir, "export_accuracy.json"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    startup.run(main, program="benchmarks/export_accuracy.py", doc=__doc__)
