"""`init_checkpoint`: start a run from a pretrained supernet (TOFA's transfer setting).

A run directory or a `.weights.h5` of a supernet of the same space and width, checked before
the run writes anything and loaded into the new model before its first step. A run directory
of another class count (an ImageNet supernet for a 10-class task) gives every weight but the
classifier, which starts fresh; the log says so in one line.
"""

from __future__ import annotations

import dataclasses
import os

from absl import logging

from ofa_tf import io
from ofa_tf.errors import OfaError, error_text
from ofa_tf.models import Supernet
from ofa_tf.runs.config import RunConfig, check_init_checkpoint_path
from ofa_tf.runs.directory import CONFIG_FILE, RunDirectory, SavedRun
from ofa_tf.runs.plan import build_model
from ofa_tf.spaces import SearchSpace


@dataclasses.dataclass(frozen=True)
class InitCheckpoint:
    """A checked `init_checkpoint`: the weights file, and the run it belongs to with that
    run's saved settings, read once (both None for a bare `.weights.h5`, which is checked
    when it is loaded)."""

    flag: str
    weights: str
    run_dir: str | None
    saved: SavedRun | None = None


def check_init_checkpoint(path: str, space: SearchSpace, num_classes: int, width_mult: float) -> InitCheckpoint:
    """Resolves `init_checkpoint` and, for a run directory, checks its space and width
    against this run (resolutions may differ: they hold no weights; so may the class count:
    `load_init_checkpoint` then leaves the classifier fresh)."""
    flag = f"init_checkpoint={path}"
    check_init_checkpoint_path(path)
    if io.isdir(path):
        run_dir, weights = path, None
    else:
        parent = os.path.dirname(os.path.dirname(io.absolute(path)))  # RUN/checkpoints/ckpt-*.weights.h5
        run_dir, weights = (parent, path) if io.isfile(os.path.join(parent, CONFIG_FILE)) else (None, path)
    if run_dir is None:
        return InitCheckpoint(flag, weights, None)
    directory = RunDirectory(run_dir)
    try:
        saved = directory.read()
    except OfaError as e:  # its reason names the file and the setting
        raise OfaError(f"{flag}: not a usable training run directory ({e})") from None
    here, theirs = space.to_config(), saved.space.to_config()
    if theirs.get("name") != here["name"]:
        raise OfaError(f"{flag}: a supernet of space {theirs.get('name')!r}; this run trains {here['name']!r}")
    if float(saved.config.width_mult) != float(width_mult):
        raise OfaError(f"{flag}: a supernet of width_mult {saved.config.width_mult}; this run has {width_mult}")
    differing = sorted(k for k in set(theirs) | set(here) if k != "resolutions" and theirs.get(k) != here.get(k))
    if differing:
        raise OfaError(f"{flag}: its space {here['name']!r} differs from this run's in {differing[0]!r}")
    if weights is None:
        latest = directory.latest_checkpoint()
        if latest is None:
            raise OfaError(f"{flag}: the run has no checkpoint yet")
        weights = latest + ".weights.h5"
    return InitCheckpoint(flag, weights, run_dir, saved)


def validation_leak(init: InitCheckpoint, config: RunConfig) -> str | None:
    """Why this run's validation split holds images `init`'s run trained on, or None.

    The split is drawn from the run's seed and validation_fraction: a run continued from
    another run on the same dataset with another seed or fraction validates (and measures
    subnets for the predictor) partly on images its starting weights were trained on, so
    those accuracies may read high.
    """
    if init.saved is None:
        return None
    theirs = init.saved.config
    if (theirs.dataset, theirs.data_dir) != (config.dataset, config.data_dir):
        return None
    if (theirs.seed, theirs.validation_fraction) == (config.seed, config.validation_fraction):
        return None
    return (f"{init.flag} was trained on {config.dataset} with seed={theirs.seed} "
            f"validation_fraction={theirs.validation_fraction}: part of this run's validation split "
            f"(seed={config.seed} validation_fraction={config.validation_fraction}) were its training images, "
            "so validation accuracies may read high; pass its seed and validation_fraction to keep them held out")


def load_init_checkpoint(model, init: InitCheckpoint) -> None:
    """Copies the pretrained supernet's weights (BN statistics included) into `model`; from a
    run of another class count, all but the classifier's.

    A run directory is loaded as its own model (its method may keep a frozen teacher or
    another number of subnet slots), then its supernet weights are copied. A bare
    `.weights.h5` must load into a model built like `model` or into a plain `Supernet`.
    """
    def fail(error: Exception) -> OfaError:
        return OfaError(f"{init.flag}: its weights do not fit this run's supernet ({error_text(error)})")

    if init.saved is not None:
        saved = init.saved
        candidates = [build_model(saved.config, saved.space, saved.num_classes, saved.method)]
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
            with io.local_copy(init.weights) as weights:
                source.load_weights(weights)
            break
        except (OSError, ValueError, KeyError) as e:
            error = error or e
    else:
        raise fail(error)
    values = getattr(source, "supernet_weights", source.weights)
    target = model.supernet_weights
    if source.num_classes != model.num_classes:  # transfer to a new task: a fresh classifier
        fresh = {id(v) for v in model.classifier.weights}
        kept = [i for i, v in enumerate(target) if id(v) not in fresh]
        skipped = {id(v) for v in source.classifier.weights}
        values = [v for v in values if id(v) not in skipped]
        target = [target[i] for i in kept]
        logging.warning("%s: %d classes there, %d here: every weight loaded but the classifier, which starts fresh",
                        init.flag, source.num_classes, model.num_classes)
    if len(values) != len(target) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(values, target)):
        raise fail(ValueError(f"{len(values)} weights there, {len(target)} here, or their shapes differ"))
    for variable, value in zip(target, values):
        variable.assign(value)
