"""Flags that choose and shape the training data."""

from __future__ import annotations

from absl import flags


def define_data_flags() -> None:
    """--dataset, --data_dir, --download, --image_size, --batch_size, --validation_fraction."""
    if "dataset" in flags.FLAGS:
        return
    flags.DEFINE_string("dataset", "npz:data/fashion_mnist_small.npz",
                        "Training data: tfds:NAME, folder:PATH (a sub-folder per class), idx:DIR "
                        "(MNIST-style *-ubyte.gz) or npz:FILE (x_train, y_train, x_test, y_test).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (tfds: datasets only).")
    flags.DEFINE_bool("download", False, "Let TFDS download and prepare a missing dataset.")
    flags.DEFINE_list("image_size", ["32"], "Input resolution(s); several = elastic resolution, one per batch.")
    flags.DEFINE_integer("batch_size", 64, "Training batch size.")
    flags.DEFINE_float("validation_fraction", 0.1,
                       "Share of the training data held out (deterministically) for validation.")


def image_sizes() -> list[int]:
    from ofa_tf.errors import OfaError
    try:
        sizes = sorted({int(s) for s in flags.FLAGS.image_size})
    except ValueError:
        raise OfaError(f"--image_size={','.join(flags.FLAGS.image_size)}: expected integers") from None
    if not sizes or sizes[0] < 8:
        raise OfaError(f"--image_size={','.join(flags.FLAGS.image_size)}: expected sizes >= 8")
    return sizes
