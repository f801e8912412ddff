"""What the choice-valued settings of a run can be: each choice's names and its check, and
how an `image_size` item reads.

Stdlib only, on purpose: `RunConfig` (whose fields are ofa-train's and ofa-check-data's
flags) lists these names in its help, and a program defines its flags, and answers
`--help`, before TensorFlow loads. The modules that implement a choice (`ofa_tf.distribute`,
`ofa_tf.data.pipeline`, `ofa_tf.layers.depthwise`, `ofa_tf.training.precision`,
`ofa_tf.training.lr_schedule`) import its names from here, so each is spelled once.
"""

from __future__ import annotations

from typing import Sequence

from ofa_tf.errors import OfaError

# Training method presets (`ofa_tf.training.methods.PRESETS` builds each).
METHODS = ("full", "deps", "bignas", "fofa", "ofa", "compofa", "tofa")

# tf.distribute strategies (`ofa_tf.distribute`).
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# Elastic depthwise kernels: centre crop, or OFA's learned kernel transform (`ofa_tf.layers.depthwise`).
KERNEL_MODES = ("center_crop", "transform")

# Compute precision of training (`ofa_tf.training.precision`).
PRECISIONS = ("none", "bfloat16", "float16")

# Learning-rate schedules: one cosine over the run, one per phase, or BigNAS's exponential decay with
# a constant ending (`ofa_tf.training.lr_schedule`).
LR_SCHEDULES = ("run", "phase", "exponential")

# Update rules (`ofa_tf.training.optimizer`): SGD with Nesterov momentum, or RMSProp as BigNAS trains on
# ImageNet.
OPTIMIZERS = ("sgd", "rmsprop")

# A parameter no network of a step used (`ofa_tf.training.optimizer`): updated with a zero gradient (weight
# decay and momentum apply, as in the references' runtime: Horovod and DDP give every parameter a gradient),
# or frozen (PyTorch's SGD with the gradient None).
UNUSED_PARAMETERS = ("update", "freeze")

# The optimizer's momentum at a channel sort (`ofa_tf.training.channel_sorting`): left where it is (DεpS's
# sort assigns the weights' `.data`, the optimizer's buffers stay in the old order), or permuted with the weights.
SORT_MOMENTUM = ("stay", "permute")

# Input size of each network of a step (`ofa_tf.training.ofa_model`): the batch's for every network, or
# AttentiveNAS's (the max net at the largest size, the min net at the smallest, others at a random one).
PER_BATCH, PER_NETWORK = "per_batch", "per_network"
SIZE_SAMPLING = (PER_BATCH, PER_NETWORK)

# Training augmentation (`ofa_tf.data.pipeline`); imagenet_autoaugment is DεpS's ImageNet recipe
# (imagenet's crop and flip, then AutoAugment, colour jitter and random erasing: `ofa_tf.data.autoaugment`).
IMAGENET, CIFAR, NONE, IMAGENET_AUTOAUGMENT = "imagenet", "cifar", "none", "imagenet_autoaugment"
AUGMENTATIONS = (IMAGENET, CIFAR, NONE, IMAGENET_AUTOAUGMENT)
IMAGENET_CROPS = (IMAGENET, IMAGENET_AUTOAUGMENT)  # the modes that random-resize-crop (and centre-crop to evaluate)
IMAGENET_MIN_SIZE = 96  # the default augmentation is imagenet when the largest image size is at least this


def check_strategy(name: str) -> None:
    """`name` must be one of `STRATEGIES`."""
    if name not in STRATEGIES:
        raise OfaError(f"strategy={name!r}: expected one of {list(STRATEGIES)}")


def check_kernel_mode(kernel_mode: str) -> None:
    """`kernel_mode` must be one of `KERNEL_MODES` (centre crop, or OFA's learned transform)."""
    if kernel_mode not in KERNEL_MODES:
        raise OfaError(f"kernel_mode={kernel_mode!r}: expected one of {list(KERNEL_MODES)}")


def check_precision(precision: str) -> None:
    """`precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise OfaError(f"mixed_precision={precision}: expected one of {list(PRECISIONS)}")


def check_augment(augment: str | None) -> None:
    """`augment` is one of `AUGMENTATIONS` (None: the default for the image size)."""
    if augment is not None and augment not in AUGMENTATIONS:
        raise OfaError(f"augment={augment}: expected one of {list(AUGMENTATIONS)}")


def check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    """`value` of setting `name` is one of `choices` (None: the method's default)."""
    if value is not None and value not in choices:
        raise OfaError(f"{name}={value}: expected one of {list(choices)}")


def default_augment(image_sizes: Sequence[int]) -> str:
    """imagenet when the largest training size is at least `IMAGENET_MIN_SIZE`, else cifar."""
    return IMAGENET if max(image_sizes) >= IMAGENET_MIN_SIZE else CIFAR


def parse_image_sizes(text: str) -> list[int]:
    """One item of `--image_size`: a size (`224`) or an inclusive range `START:STOP:STEP`
    (`128:224:32` -> 128, 160, 192, 224; OFA's 25 sizes are `128:224:4`)."""
    parts = text.strip().split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise OfaError(f"image_size={text}: expected integers, or a range START:STOP:STEP") from None
    if len(numbers) == 1:
        return numbers
    if len(numbers) != 3 or not (0 < numbers[0] <= numbers[1] and numbers[2] > 0):
        raise OfaError(f"image_size={text}: expected a range START:STOP:STEP with 0 < START <= STOP and STEP > 0")
    start, stop, step = numbers
    return list(range(start, stop + 1, step))
