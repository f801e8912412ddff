"""Input pipeline vs train step: images per second at 224 px with ImageNet augmentation, as one JSON object.

  python benchmarks/input_throughput.py [--space=ofa_mbv3] [--batch=32] [--steps=6] [--images=512]

(or `python -m benchmarks.input_throughput ...`, from a checkout with ofa_tf installed.)

Generates a folder of `--images` JPEGs of random sizes (100-500 px a side, two classes) in a
temporary directory (or reads `--dataset=folder:...` / `tfrecord:...`), and streams it through
`make_pipeline` exactly as training does (`folder:` listing, decode-and-crop in the pipeline,
`--augment=imagenet`, one `--resolution` per batch). Keys:
  input_images_per_s: the input pipeline alone (batches pulled and discarded);
  step_images_per_s: the train step alone, on one cached batch (plain SGD on the elastic
    supernet's max subnet, the step `benchmarks/step_time.py` times);
  end_to_end_images_per_s: the step fed by the pipeline, as a run does;
  end_to_end_over_step: the last two's ratio (1.0: the input never starves the step);
  cpu_cores: the cores the process may use, and `threads`, TensorFlow's thread settings.
With `--memory_images=2000,20000` it measures instead, for folders of that many generated
JPEGs, the peak resident memory (MB, `ru_maxrss`) of a fresh process that streams `--steps`
batches through the training pipeline at `--image_size`-style sizes 128:224:32 (`peak_rss_mb`,
and `largest_over_smallest`: memory must not grow with the number of images). With
`--memory_of=training` each fresh process is a whole `python -m tools.train` run instead (DεpS
on ofa_mbv3, `--steps` steps of `--batch` images, `--image_size=128:224:32 --augment=imagenet`,
then its epoch-end evaluation and checkpoint), its peak memory read from `os.wait4`.
Machines here are shared: compare the ratios within one run, not seconds across runs.
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts after the thread settings

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.data import load_dataset, make_pipeline  # noqa: E402
from ofa_tf.models import Supernet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/input_throughput.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

flags.DEFINE_string("space", "ofa_mbv3", "Search space of the supernet whose step is timed.")
flags.DEFINE_string("dataset", None, "folder:PATH or tfrecord:GLOB to read (default: generated JPEGs).")
flags.DEFINE_integer("images", 512, "Generated JPEGs (without --dataset).")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_integer("resolution", 224, "Input resolution.")
flags.DEFINE_integer("steps", 6, "Timed batches of each measurement (after 2 warm-up batches).")
flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
flags.DEFINE_list("memory_images", None, "Instead: peak memory of the pipeline over folders of these many JPEGs.")
flags.DEFINE_string("memory_probe", None, "(internal) stream this dataset and print the peak memory.")
flags.DEFINE_enum("memory_of", "pipeline", ["pipeline", "training"],
                  "With --memory_images: measure the input pipeline alone, or a whole `tools.train` run.")
MEMORY_SIZES = [128, 160, 192, 224]
FLAGS = flags.FLAGS


def generate_jpegs(root: str, count: int, seed: int = 0) -> str:
    """`count` JPEGs of random sizes (100-500 px a side) in two class folders under `root`."""
    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        os.makedirs(os.path.join(root, c), exist_ok=True)
    for i in range(count):
        height, width = rng.integers(100, 501, 2)
        small = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)  # smooth, photo-like
        image = tf.cast(tf.image.resize(small, (int(height), int(width))), tf.uint8)
        tf.io.write_file(os.path.join(root, "ab"[i % 2], f"{i:06d}.jpg"), tf.io.encode_jpeg(image, quality=90))
    return root


def rate(batches, batch: int, steps: int, work) -> float:
    """Images per second over `steps` batches of `batches` (after 2 warm-up batches)."""
    iterator = iter(batches)
    for _ in range(2):
        work(*next(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        work(*next(iterator))
    return steps * batch / (time.perf_counter() - start)


def probe_memory(spec: str) -> dict:
    """Streams `--steps` training batches of `spec` (sizes 128-224, imagenet augmentation)."""
    data = load_dataset(spec)
    pipeline = make_pipeline(data.train, FLAGS.batch, MEMORY_SIZES, training=True, repeat=True,
                             augmentation="imagenet", encoding=data.encoding)
    for x, _ in pipeline.take(FLAGS.steps):
        x.numpy()
    return {"images": data.num_train, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def training_peak_rss_mb(folder: str, model_dir: str) -> float:
    """Peak resident memory (MB) of one `python -m tools.train` run over `folder`."""
    command = [sys.executable, "-m", "tools.train", f"--dataset=folder:{folder}", f"--model_dir={model_dir}",
               "--method=deps", "--image_size=128:224:32", "--augment=imagenet", f"--batch_size={FLAGS.batch}",
               "--epochs=1", f"--steps_per_epoch={FLAGS.steps}", "--bn_calibration_images=200"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the max over all children
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            raise SystemExit(f"tools.train failed ({process.returncode}): {log.read().strip()[-2000:]}")
    return usage.ru_maxrss / 1024


def compare_memory(counts: list[int]) -> dict:
    """`probe_memory` in a fresh process per folder; the smaller folders link to the first
    files of the largest."""
    result = {"batch": FLAGS.batch, "steps": FLAGS.steps, "sizes": MEMORY_SIZES,
              "cpu_cores": len(os.sched_getaffinity(0)), "peak_rss_mb": {}}
    with tempfile.TemporaryDirectory() as tmp:
        everything = generate_jpegs(os.path.join(tmp, "all"), max(counts))
        for count in sorted(counts):
            folder = os.path.join(tmp, f"n{count}")
            for c in ("a", "b"):
                os.makedirs(os.path.join(folder, c))
                for name in sorted(os.listdir(os.path.join(everything, c)))[:count // 2]:
                    os.symlink(os.path.join(everything, c, name), os.path.join(folder, c, name))
            if FLAGS.memory_of == "training":
                peak = training_peak_rss_mb(folder, os.path.join(tmp, f"run{count}"))
            else:
                done = subprocess.run([sys.executable, os.path.abspath(__file__), f"--memory_probe=folder:{folder}",
                                       f"--batch={FLAGS.batch}", f"--steps={FLAGS.steps}"], capture_output=True,
                                      text=True, check=True)
                peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
            result["peak_rss_mb"][str(count)] = round(peak, 1)
    values = list(result["peak_rss_mb"].values())
    result["largest_over_smallest"] = values[-1] / values[0]
    return result


def main(argv: list[str]) -> None:
    args = FLAGS
    if args.memory_probe:
        print(json.dumps(probe_memory(args.memory_probe)))
        return
    if args.memory_images:
        print(json.dumps(compare_memory([int(n) for n in args.memory_images]), indent=1))
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.dataset or f"folder:{generate_jpegs(os.path.join(tmp, 'images'), args.images)}"
        data = load_dataset(spec)
        pipeline = make_pipeline(data.train, args.batch, [args.resolution], training=True, repeat=True,
                                 augmentation="imagenet", encoding=data.encoding)
        result = {"dataset": args.dataset or f"{args.images} generated JPEGs, 100-500 px", "space": args.space,
                  "batch": args.batch, "resolution": args.resolution, "augment": "imagenet", "steps": args.steps,
                  "cpu_cores": len(os.sched_getaffinity(0)), "threads": args.threads or "default"}
        result["input_images_per_s"] = rate(pipeline, args.batch, args.steps * 4, lambda x, y: x.numpy())

        model = Supernet(args.space, num_classes=args.num_classes, resolutions=[args.resolution])
        model.build()
        step = common.make_step(model, keras.optimizers.SGD(0.01), arch=model.arch_tensor("max"))
        x, y = next(iter(pipeline))
        y = y % args.num_classes
        result["step_trace_s"] = round(common.timed(step, x, y), 2)
        result["step_images_per_s"] = rate(iter(lambda: (x, y), None), args.batch, args.steps,
                                           lambda a, b: step(a, b).numpy())
        result["end_to_end_images_per_s"] = rate(pipeline, args.batch, args.steps,
                                                 lambda a, b: step(a, b % args.num_classes).numpy())
    result["end_to_end_over_step"] = result["end_to_end_images_per_s"] / result["step_images_per_s"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/input_throughput.py", doc=__doc__,
                before_first_op=lambda: common.set_threads(FLAGS.threads))
