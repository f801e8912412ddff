"""Which images a tool uses for a run: the run's own dataset, another one (`--dataset`), or none.

A run trained here names its training data in config.json and tools use it. A supernet
imported from OFA's PyTorch checkpoints (`ofa-import-ofa`; config.json has "imported_from")
has no training data here: its config records what it was trained on (ImageNet) for the
record only. For such a run:

- tools that need images (accuracy, BN recalibration, int8 calibration, QAT) take them from
  `--dataset` (any spec `ofa-train --dataset` takes, with the supernet's class count), and
  without it stop with one line (`require_dataset`);
- `--bn_calibration_images=0` keeps the checkpoint's BN statistics (every tool that
  recalibrates), so accuracy needs evaluation images only;
- `ofa-export` without `--dataset` writes the model with the checkpoint's BN statistics and
  records that no accuracy was checked.
"""

from __future__ import annotations

from ofa_tf.data import load_dataset
from ofa_tf.data.sources import check_dataset_spec
from ofa_tf.errors import OfaError

NO_DATASET = "none"  # ofa-export --dataset=none: no recalibration, no accuracy
DATASET_EXAMPLES = "npz:FILE, folder:DIR, tfrecord:GLOB, idx:DIR or tfds:NAME"


def is_imported(saved) -> bool:
    """Whether the run was imported (its supernet trained elsewhere, its data not here)."""
    return "imported_from" in saved.raw


def own_dataset(saved) -> str | None:
    """The run's own training data spec, or None when the run has none here (imported)."""
    return None if is_imported(saved) else saved.config.dataset


def resolve_dataset(saved, dataset: str | None) -> str | None:
    """The data spec a tool uses: `dataset` when given (NO_DATASET: none), else the run's own."""
    if dataset == NO_DATASET:
        return None
    return dataset or own_dataset(saved)


def require_dataset(saved, dataset: str | None, model_dir: str, why: str) -> str:
    """The data spec a tool that needs images uses (`resolve_dataset`); an imported run with
    no `dataset` given is a one-line error naming the flag (`why`: what the images are for)."""
    spec = resolve_dataset(saved, dataset)
    if spec is None:
        net = saved.raw.get("imported_from", {}).get("net_id", "an imported supernet")
        raise OfaError(f"dataset is required: model_dir={model_dir} ({net}, imported) has no training data here, "
                       f"and {why} needs images; pass --dataset=SPEC ({DATASET_EXAMPLES}) with its "
                       f"{saved.num_classes} classes")
    return spec


def check_dataset(spec: str | None, saved, setting: str = "dataset") -> None:
    """A `--dataset` spec for the run: a valid spec (checked without loading), then loaded,
    its class count that of the supernet's classifier. None passes (nothing given)."""
    if spec is None or spec == NO_DATASET:
        return
    check_dataset_spec(spec, setting)
    c = saved.config
    data = load_dataset(spec, c.data_dir if spec.startswith("tfds:") else None,
                        label_offset=c.label_offset if spec.startswith("tfrecord:") else 0)
    check_classes(spec, data.num_classes, saved.num_classes, setting)


def check_classes(spec: str, dataset_classes: int, supernet_classes: int, setting: str = "dataset") -> None:
    if dataset_classes != supernet_classes:
        raise OfaError(f"{setting}={spec}: {dataset_classes} classes, but the supernet's classifier has "
                       f"{supernet_classes}")


__all__ = ["DATASET_EXAMPLES", "NO_DATASET", "check_classes", "check_dataset", "is_imported", "own_dataset",
           "require_dataset", "resolve_dataset"]
