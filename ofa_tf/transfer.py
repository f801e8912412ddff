"""TOFA's transfer setting (papers/004): few labels, unlabelled images, a pretrained start.

- `labelled_subset`: keep N labelled images per class of the train split (seeded, the
  same on every run), the rest available as unlabelled data (`--unlabelled_dataset=rest`).
- `unlabelled_images`: the unlabelled source of a run, `rest` or any dataset spec (its
  labels, if any, are ignored).
- `semi_supervised_pipeline`: batches `({labelled, unlabelled_weak, unlabelled_strong},
  labels)` for `OnceForAllModel.train_step` (see `ofa_tf.training.semi_supervised`).
- `InitCheckpoint`: `--init_checkpoint`, a run directory or a `.weights.h5` of a supernet
  of the same space, width and class count, checked before the run writes anything and
  loaded into the new model before its first step.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from ofa_tf.augment import strong_augment
from ofa_tf.data import DataSource, augment, batch_resolution, load_dataset, normalize, to_rgb_float
from ofa_tf.errors import OfaError
from ofa_tf.spaces import SearchSpace
from ofa_tf.training.methods import Method
from ofa_tf.training.semi_supervised import LABELLED, STRONG, WEAK

REST = "rest"


@dataclasses.dataclass
class TransferData:
    """What `prepare_transfer` gives a run."""

    labelled: tf.data.Dataset  # the (image, label) examples the run trains on
    unlabelled: tf.data.Dataset | None  # unlabelled images; None: a supervised run
    calibration: tf.data.Dataset  # (image, label) examples for BN recalibration (labels unused)
    init: "InitCheckpoint | None"  # the checked --init_checkpoint; None: random initial weights


def prepare_transfer(config, data: DataSource, train_split: tf.data.Dataset, space: SearchSpace,
                     download: bool = False) -> TransferData:
    """A run's TOFA data and pretrained start from its `RunConfig`: every TOFA setting
    checked, nothing loaded into a model yet. Without TOFA settings, the train split as is.

    BN recalibration (per-epoch evaluation) uses the labelled images and, with `rest`, the
    unlabelled ones (it needs no labels; another source may differ in image size), repeated
    so that a few labelled images per class still fill its batches.
    """
    c = config
    checks = [
        (c.labelled_per_class >= 0,
         f"--labelled_per_class={c.labelled_per_class}: expected >= 0 (0 keeps every label)"),
        (c.unlabelled_ratio >= 1, f"--unlabelled_ratio={c.unlabelled_ratio}: expected a positive integer"),
        (c.unlabelled_weight >= 0, f"--unlabelled_weight={c.unlabelled_weight}: expected a number >= 0"),
        (0 < c.fixmatch_threshold <= 1, f"--fixmatch_threshold={c.fixmatch_threshold}: expected a value in (0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise OfaError(message)
    labelled, rest = train_split, None
    if c.labelled_per_class:
        labelled, rest = labelled_subset(train_split, c.labelled_per_class, data.class_names, c.seed)
    unlabelled = (unlabelled_images(c.unlabelled_dataset, rest, c.data_dir, max(c.image_size), download)
                  if c.unlabelled_dataset else None)
    init = (check_init_checkpoint(c.init_checkpoint, space, data.num_classes, c.width_mult)
            if c.init_checkpoint else None)
    leak = validation_leak(init, c) if init is not None else None
    if leak:
        logging.warning(leak)
    calibration = train_split
    if c.labelled_per_class or unlabelled is not None:
        calibration = labelled if c.unlabelled_dataset != REST else labelled.concatenate(
            unlabelled.map(lambda x: (x, tf.constant(-1, labelled.element_spec[1].dtype))))
        calibration = calibration.repeat()
    return TransferData(labelled, unlabelled, calibration, init)


# ---------------------------------------------------------------------------- data
def labelled_subset(dataset: tf.data.Dataset, per_class: int, class_names: Sequence[str],
                    seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(labelled, rest): `per_class` examples of every class, drawn with `seed` from the
    examples in `dataset` order, and everything else (in order).

    Raises OfaError when a class has fewer than `per_class` examples.
    """
    if per_class <= 0:
        raise OfaError(f"--labelled_per_class={per_class}: expected a positive number (0 keeps every label)")
    labels = np.concatenate([y for _, y in dataset.batch(4096).as_numpy_iterator()] or [np.zeros(0, np.int64)])
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), bool)
    for c, name in enumerate(class_names):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise OfaError(f"--labelled_per_class={per_class}: class {name!r} has only {len(members)} "
                           "training images")
        keep[rng.choice(members, per_class, replace=False)] = True
    keep = tf.constant(keep)
    indexed = dataset.enumerate()
    drop_index = lambda i, example: example  # noqa: E731
    labelled = indexed.filter(lambda i, e: keep[i]).map(drop_index)
    rest = indexed.filter(lambda i, e: tf.logical_not(keep[i])).map(drop_index)
    return labelled, rest


def unlabelled_images(spec: str, rest: tf.data.Dataset | None, data_dir: str | None = None,
                      image_size: int | None = None, download: bool = False) -> tf.data.Dataset:
    """The unlabelled images (uint8 HxWxC) of `--unlabelled_dataset=spec`.

    `rest` is the train split minus the labelled subset. Any other spec is loaded like
    `--dataset`; its train split's labels are dropped, but a malformed source (e.g. labels
    of another shape than its images' count) is still an error, named with the flag.
    """
    if spec == REST:
        if rest is None:
            raise OfaError(f"--unlabelled_dataset={REST}: needs --labelled_per_class > 0 "
                           "(with every label kept there is no rest)")
        images = rest
    else:
        try:
            images = load_dataset(spec, data_dir, image_size, download).train
        except OfaError as e:
            message = str(e)
            message = message[len(spec) + 2:] if message.startswith(spec + ": ") else message
            raise OfaError(f"--unlabelled_dataset={spec}: {message}") from None
    return images.map(lambda x, *_: x)


def check_semi_supervised_method(method: Method) -> None:
    """FixMatch trains the max net and the subnets distil from it, so every phase must train
    the full model (not OFA / CompOFA, whose shrinking phases freeze it)."""
    for phase in method.phases:
        if not phase.train_full:
            raise OfaError(f"--unlabelled_dataset: --method={method.name} does not train the full model in "
                           f"phase {phase.name!r}; semi-supervised training needs a method that always does "
                           "(tofa, bignas, fofa, deps, full)")


def semi_supervised_pipeline(labelled: tf.data.Dataset, unlabelled: tf.data.Dataset, batch_size: int,
                             unlabelled_ratio: int, resolutions: Sequence[int], *, seed: int = 0,
                             shuffle_buffer: int = 10_000, start_batch: int = 0) -> tf.data.Dataset:
    """Endless batches of ({LABELLED, WEAK, STRONG} images, labels): `batch_size` labelled
    (weakly augmented) and `unlabelled_ratio * batch_size` unlabelled images in a weak and a
    strong view, all of one resolution drawn per batch as `make_pipeline` does.

    Both streams are shuffled and augmented with seeds derived from `seed` and each image's
    position in its stream, so batch t is the same on every run; `start_batch` starts at
    batch t (exact resume) without doing the image work of the skipped batches.
    """
    if batch_size <= 0:
        raise OfaError(f"--batch_size={batch_size}: expected a positive number")
    if unlabelled_ratio < 1:
        raise OfaError(f"--unlabelled_ratio={unlabelled_ratio}: expected a positive integer")
    unlabelled_batch = unlabelled_ratio * batch_size
    seed64 = tf.cast(seed, tf.int64)

    def weak(index, example):
        return augment(to_rgb_float(example[0]), tf.stack([seed64, index])), example[1]

    def weak_and_strong(index, image):
        image = to_rgb_float(image)
        weak_view = augment(image, tf.stack([seed64 + 2, index]))
        return weak_view, strong_augment(weak_view, tf.stack([seed64 + 3, index]))

    labelled = (labelled.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
                .enumerate().skip(start_batch * batch_size)
                .map(weak, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True))
    unlabelled = (unlabelled.shuffle(shuffle_buffer, seed=seed + 2, reshuffle_each_iteration=True).repeat()
                  .enumerate().skip(start_batch * unlabelled_batch)
                  .map(weak_and_strong, num_parallel_calls=tf.data.AUTOTUNE)
                  .batch(unlabelled_batch, drop_remainder=True))
    sizes = tf.constant(sorted(int(r) for r in resolutions), tf.int32)

    def resize(index, batch):
        (images, labels), (weak_views, strong_views) = batch
        size = batch_resolution(index, sizes, seed)
        scale = lambda x: normalize(tf.image.resize(x, tf.stack([size, size])))  # noqa: E731
        views = {LABELLED: scale(images), WEAK: scale(weak_views), STRONG: scale(strong_views)}
        return views, tf.cast(labels, tf.int32)

    return (tf.data.Dataset.zip(labelled, unlabelled).enumerate(start=start_batch)
            .map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


# ---------------------------------------------------------------------------- init checkpoint
@dataclasses.dataclass(frozen=True)
class InitCheckpoint:
    """A checked `--init_checkpoint`: the weights file, and the run directory it belongs to
    with that run's config.json, read once (both None for a bare `.weights.h5`, which is
    checked when it is loaded)."""

    flag: str
    weights: str
    run_dir: str | None
    saved: dict | None = None


def check_init_checkpoint(path: str, space: SearchSpace, num_classes: int, width_mult: float) -> InitCheckpoint:
    """Resolves `--init_checkpoint` and, for a run directory, checks its space, width and
    class count against this run (resolutions may differ: they hold no weights)."""
    flag = f"--init_checkpoint={path}"
    if os.path.isdir(path):
        run_dir, weights = path, None
    elif path.endswith(".weights.h5") and os.path.isfile(path):
        parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))  # RUN/checkpoints/ckpt-*.weights.h5
        run_dir, weights = (parent, path) if os.path.isfile(os.path.join(parent, "config.json")) else (None, path)
    else:
        raise OfaError(f"{flag}: expected a training run directory or a .weights.h5 file")
    if run_dir is None:
        return InitCheckpoint(flag, weights, None)
    from ofa_tf.run import CHECKPOINT_DIR, CONFIG_FILE  # run imports this module
    try:
        with open(os.path.join(run_dir, CONFIG_FILE)) as f:
            saved = json.load(f)
        saved_space, saved_classes = saved["space"], int(saved["num_classes"])
        saved_width = float(saved["run"].get("width_mult", 1.0))
    except (OSError, ValueError, KeyError, TypeError):
        raise OfaError(f"{flag}: not a training run directory (no readable {CONFIG_FILE})") from None
    here = space.to_config()
    if saved_space.get("name") != here["name"]:
        raise OfaError(f"{flag}: a supernet of space {saved_space.get('name')!r}; this run trains {here['name']!r}")
    if saved_width != float(width_mult):
        raise OfaError(f"{flag}: a supernet of width_mult {saved_width}; this run has {width_mult}")
    if saved_classes != num_classes:
        raise OfaError(f"{flag}: a supernet with {saved_classes} classes; this run's dataset has {num_classes}")
    differing = sorted(k for k in set(saved_space) | set(here)
                       if k != "resolutions" and saved_space.get(k) != here.get(k))
    if differing:
        raise OfaError(f"{flag}: its space {here['name']!r} differs from this run's in {differing[0]!r}")
    if weights is None:
        found = sorted(glob.glob(os.path.join(run_dir, CHECKPOINT_DIR, "*.weights.h5")))
        if not found:
            raise OfaError(f"{flag}: the run has no checkpoint yet")
        weights = found[-1]
    return InitCheckpoint(flag, weights, run_dir, saved)


def validation_leak(init: InitCheckpoint, config) -> str | None:
    """Why this run's validation split holds images `init`'s run trained on, or None.

    The split is drawn from the run's --seed and --validation_fraction: a run continued
    from another run on the same dataset with another seed or fraction validates (and
    measures subnets for the predictor) partly on images its starting weights were trained
    on, so those accuracies may read high.
    """
    if init.saved is None:
        return None
    theirs = init.saved["run"]
    if (theirs.get("dataset"), theirs.get("data_dir")) != (config.dataset, config.data_dir):
        return None
    their_split = (theirs.get("seed"), theirs.get("validation_fraction"))
    if their_split == (config.seed, config.validation_fraction):
        return None
    return (f"{init.flag} was trained on {config.dataset} with --seed={their_split[0]} "
            f"--validation_fraction={their_split[1]}: part of this run's validation split (--seed={config.seed} "
            f"--validation_fraction={config.validation_fraction}) were its training images, so validation "
            f"accuracies may read high; pass its --seed and --validation_fraction to keep them held out")


def load_init_checkpoint(model, init: InitCheckpoint) -> None:
    """Copies the pretrained supernet's weights (BN statistics included) into `model`.

    A run directory is loaded as its own model (its method may keep a frozen teacher or
    another number of subnet slots), then its supernet weights are copied. A bare
    `.weights.h5` must load into a model built like `model` or into a plain `Supernet`.
    """
    from ofa_tf.models import Supernet
    from ofa_tf.run import RunConfig, build_model  # run imports this module

    def fail(error: Exception) -> OfaError:
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        return OfaError(f"{init.flag}: its weights do not fit this run's supernet ({detail})")

    if init.saved is not None:
        saved = init.saved
        config = RunConfig(**{**saved["run"], "image_size": tuple(saved["run"]["image_size"])})
        source = build_model(config, SearchSpace.from_config(saved["space"]), int(saved["num_classes"]),
                             Method.from_config(saved["method"]))
        candidates = [source]
    else:
        plain = Supernet(model.space.to_config(), model.num_classes, dropout=model.dropout_rate,
                         kernel_mode=model.kernel_mode, block_class=model.block_class,
                         bn_momentum=model.bn_momentum, bn_epsilon=model.bn_epsilon)
        plain.build()
        same = model.__class__.from_config(model.get_config())
        same.build()
        candidates = [same, plain]
    error: Exception | None = None
    for source in candidates:
        try:
            source.load_weights(init.weights)
            break
        except (OSError, ValueError, KeyError) as e:
            error = error or e
    else:
        raise fail(error)
    values = getattr(source, "supernet_weights", source.weights)
    target = model.supernet_weights
    if len(values) != len(target) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(values, target)):
        raise fail(ValueError(f"{len(values)} weights there, {len(target)} here, or their shapes differ"))
    for variable, value in zip(target, values):
        variable.assign(value)
