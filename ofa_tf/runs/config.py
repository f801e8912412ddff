"""`RunConfig`: every setting of a training run, with its default, help and checks in one place.

The command line is generated from this dataclass (`ofa_tf.cli.config_flags`): each field is
a flag of the same name, default and help, so a setting is spelled once. The config is data
with its own range checks (`check`); `RunPlan.resolve` (plan.py) checks the rest and builds
what the run needs, once. Messages name the field (`epochs=0: expected ...`); the command
line words them as flags (`--epochs=0: ...`).

Importing this module loads no TensorFlow (the choices come from `ofa_tf.choices`), so
ofa-train's `--help` lists these settings at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from ofa_tf.choices import (AUGMENTATIONS, IMAGENET_MIN_SIZE, KERNEL_MODES, LR_SCHEDULES, METHODS, OPTIMIZERS,
                            PER_BATCH, PRECISIONS, SIZE_SAMPLING, SORT_MOMENTUM, STRATEGIES,
                            UNUSED_PARAMETERS, default_augment, parse_image_sizes)
from ofa_tf.errors import OfaError
from ofa_tf.io import isdir, isfile
from ofa_tf.spaces import SPACES
from ofa_tf.values import is_finite_number, is_int, shown

# settings a resumed run may change: how it runs, not what it computes
RESUMABLE_CHANGES = frozenset({"strategy", "checkpoint_every_steps", "tensorboard_update_freq"})
# settings every version of ofa_tf has saved under config.json's "run": a run without one of
# them is damaged, and reading it fails rather than guessing (today's default may not be what it used)
REQUIRED_SETTINGS = frozenset({
    "method", "space", "width_mult", "image_size", "dataset", "data_dir", "validation_fraction", "epochs",
    "steps_per_epoch", "batch_size", "seed", "strategy", "learning_rate", "lr_warmup_epochs", "momentum",
    "weight_decay", "grad_clip", "label_smoothing", "dropout", "warmup_fraction", "epsilon_start",
    "epsilon_ramp_epochs", "epsilon_mode", "num_subnets", "kd_temperature", "kernel_mode", "bn_calibration_images"})
# the settings added since: what a run saved before a setting existed computed, its value
# there (not today's default): supervised from scratch, one cosine over the run, flip and
# pad-crop augmentation at every size, float32, decoupled weight decay; grad_clip_mode None is
# "the method's", and such a run's saved method records its clipping (`Method.from_config`);
# the default elastic block (block_class None), TensorBoard once per epoch; no drop-connect, every
# network of a step at the batch's size, SGD, and the space's max net as the full network (0);
# parameters no network of a step used frozen, momentum permuted with a channel sort, BN over the
# whole per-device batch
LEGACY_VALUES = {
    "checkpoint_every_steps": None, "labelled_per_class": 0, "unlabelled_dataset": None, "unlabelled_ratio": 1,
    "unlabelled_weight": 1.0, "fixmatch_threshold": 0.95, "init_checkpoint": None, "lr_schedule": "run",
    "augment": "cifar", "label_offset": 0, "grad_clip_mode": None, "mixed_precision": "none",
    "weight_decay_form": "decoupled", "block_class": None, "tensorboard_update_freq": None,
    "drop_connect": 0.0, "size_sampling": PER_BATCH, "optimizer": "sgd", "full_kernel": 0,
    "unused_parameters": "freeze", "sort_momentum": "permute", "bn_virtual_batch": None}
# settings whose None means "the method's": a resumed run that saved a value compares it with what
# the method resolves None to (`RunPlan.method_defaults`), so a default that did not change for that
# method resumes without the flag
METHOD_DEFAULTED = frozenset({"dropout", "drop_connect", "size_sampling", "optimizer", "full_kernel"})
MIN_IMAGE_SIZE = 8

SPACE, DATA, SCHEDULE, OPTIMIZER, METHOD, TRANSFER = ("space", "data", "schedule", "optimizer", "method",
                                                      "transfer (TOFA)")


def setting(default: Any, help: str, group: str, path: str | None = None,  # noqa: A002 (the flag's help)
            items: Any = None) -> Any:
    """A config field with the help text and flag group the command line shows for it
    (`path="input"`: its value is a file or directory that is read; `items`: for a list, the
    function that parses one comma-separated item into a list of values)."""
    metadata = {"help": help, "group": group}
    if path is not None:
        metadata["path"] = path
    if items is not None:
        metadata["items"] = items
    return dataclasses.field(default=default, metadata=metadata)


def check_init_checkpoint_path(path: str) -> None:
    """`init_checkpoint` names a run directory or a `.weights.h5` file (what is in it is
    checked against the run by `check_init_checkpoint`, once the dataset's classes are known)."""
    if not (isdir(path) or (path.endswith(".weights.h5") and isfile(path))):
        raise OfaError(f"init_checkpoint={path}: expected a training run directory or a .weights.h5 file")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (what `config.json` holds under "run")."""

    method: str = setting("deps", f"Training method preset: one of {sorted(METHODS)}.", METHOD)
    space: str = setting("ofa_mbv3", f"Search space: one of {sorted(SPACES)}, or a JSON file of a space's "
                         "config.", SPACE)
    width_mult: float = setting(1.0, "Channel width multiplier of the space (OFA uses 1.0 and 1.2).", SPACE)
    block_class: str | None = setting(
        None, "Your own elastic block, MODULE:CLASS (a subclass of ElasticInvertedResidual registered with "
        "@keras.saving.register_keras_serializable; the module is imported from PYTHONPATH or the current "
        "directory). Recorded in config.json: every tool imports it from there (docs/extending.md). Default: "
        "ElasticInvertedResidual.", SPACE)
    image_size: tuple[int, ...] = setting(
        (32,), "Input resolution(s) the supernet trains at; several = elastic resolution, one per batch. A list "
        "(128,160,224) and/or inclusive ranges START:STOP:STEP (128:224:4 = OFA's 25 sizes).", DATA,
        items=parse_image_sizes)
    dataset: str = setting(
        "npz:data/fashion_mnist_small.npz", "Training data: tfds:NAME, folder:PATH (a sub-folder per class; "
        "files are decoded as training reads them), tfrecord:GLOB (tf.train.Example records with image/encoded "
        "and image/class/label, the standard ImageNet conversion), idx:DIR (MNIST-style *-ubyte.gz) or npz:FILE "
        "(x_train, y_train, x_test, y_test).", DATA)
    augment: str | None = setting(
        None, f"Training augmentation: one of {list(AUGMENTATIONS)}. imagenet: Inception-style random-resized crop "
        "(area 8-100%, aspect 3/4-4/3) and flip, evaluation at size/0.875 centre-cropped; imagenet_autoaugment: "
        "imagenet, then AutoAugment (ImageNet policy), ColorJitter(0.4, 0.4, 0.4, 0.1) and RandomErasing(0.2), "
        "DεpS's ImageNet recipe; cifar: flip and reflect-pad-4-then-crop (DεpS's CIFAR recipe); none. Default: "
        f"imagenet when the largest image_size is >= {IMAGENET_MIN_SIZE}, else cifar.", DATA)
    label_offset: int = setting(
        0, "Subtracted from tfrecord: labels (1 for the standard ImageNet conversion, whose labels start at 1).",
        DATA)
    data_dir: str | None = setting(None, "TFDS data directory (tfds: datasets only).", DATA)
    validation_fraction: float = setting(
        0.1, "Share of the training data held out (deterministically) for validation.", DATA)
    epochs: int = setting(4, "Training epochs.", SCHEDULE)
    steps_per_epoch: int | None = setting(
        None, "Steps per epoch (default: one pass over the training split).", SCHEDULE)
    batch_size: int = setting(64, "Global training batch size (split over the replicas).", DATA)
    seed: int = setting(0, "Seed of data order, augmentation and subnet sampling.", SCHEDULE)
    strategy: str = setting("default", f"tf.distribute strategy: one of {list(STRATEGIES)} (multi_worker reads "
                            "the cluster from TF_CONFIG; see BUILD.md).", SCHEDULE)
    learning_rate: float | None = setting(
        None, "Peak learning rate of the cosine schedule (default: the method's rate per 256 images x "
        "batch_size / 256: deps, ofa, compofa, fofa, full 0.325; bignas 0.1; tofa 0.08).", OPTIMIZER)
    lr_warmup_epochs: float | None = setting(
        None, "Linear LR warm-up from 0 at the start of the run, in epochs; replaces the method's warm-ups "
        "(bignas: 5/360 of the run; ofa, compofa: 5/125 of each phase that has one; others none); 0: none.",
        OPTIMIZER)
    lr_schedule: str | None = setting(
        None, "run: one cosine decay over the whole run (DεpS, BigNAS, fOFA); phase: the cosine restarts at every "
        "phase start (OFA's and CompOFA's scripts; their default); exponential: x 0.97 every 2.4/400 of the run, "
        "never below 5% of the peak (BigNAS on ImageNet; the default with optimizer=rmsprop). A phase's LR scale "
        "applies to each.", OPTIMIZER)
    optimizer: str | None = setting(
        None, f"Update rule: one of {list(OPTIMIZERS)} (default: the method's, sgd). rmsprop: BigNAS's ImageNet "
        "optimizer as DεpS runs it (PyTorch's RMSprop, rho 0.9, epsilon sqrt(1e-3), momentum), with its rate "
        "0.016 per 256 images and the exponential schedule unless learning_rate / lr_schedule are given.",
        OPTIMIZER)
    momentum: float = setting(0.9, "SGD Nesterov (or RMSProp) momentum, in [0, 1).", OPTIMIZER)
    weight_decay: float | None = setting(
        None, "Weight decay (not on BN or biases), >= 0 (default: the method's; bignas, tofa 1e-5, others 3e-5).",
        OPTIMIZER)
    weight_decay_form: str | None = setting(
        None, "coupled: L2 added to the gradient before momentum, as PyTorch SGD (every preset's default); "
        "decoupled: w -= lr * weight_decay * w after Keras SGD's momentum step.", OPTIMIZER)
    grad_clip: float | None = setting(
        None, "Gradient clip threshold (default: the method's: bignas and fofa 1.0 by value); alone on a "
        "method that does not clip, clips by norm.", OPTIMIZER)
    bn_virtual_batch: int | None = setting(
        None, "Batch norm in training normalises over groups of this many images of each device's batch, as the "
        "references normalise over each GPU's (OFA 64, DεpS 128, CompOFA and fOFA 256, AttentiveNAS 32 images; "
        "the recipes in flags/ set theirs). A multiple of it per device; default: the whole per-device batch.",
        DATA)
    unused_parameters: str = setting(
        "update", f"A parameter no network of a step used (a block every sampled depth left out, a kernel "
        f"transform no network ran): one of {list(UNUSED_PARAMETERS)}. update: it takes the step with a zero "
        "gradient, so weight decay and momentum still move it, as in every reference's runtime (Horovod and "
        "DDP give every parameter a gradient); freeze: it is left alone, as PyTorch SGD leaves a parameter "
        "whose gradient is None.", OPTIMIZER)
    sort_momentum: str = setting(
        "stay", f"The optimizer's momentum when a channel sort reorders the weights: one of {list(SORT_MOMENTUM)}. "
        "stay: left in the old order, as DεpS's sort leaves PyTorch's optimizer state (it assigns the weights' "
        ".data); permute: reordered with its weights.", OPTIMIZER)
    grad_clip_mode: str | None = setting(
        None, "value: clip each gradient element to [-grad_clip, grad_clip]; norm: the global norm; none. Applied "
        "to the replicas' averaged gradient (default: the method's).", OPTIMIZER)
    label_smoothing: float = setting(0.1, "Label smoothing of the label losses, in [0, 1).", OPTIMIZER)
    dropout: float | None = setting(
        None, "Dropout before the classifier, in [0, 1) (default: the method's: bignas 0.2, as AttentiveNAS's "
        "config; others 0.1).", OPTIMIZER)
    drop_connect: float | None = setting(
        None, "Drop-connect rate of the max net's residual blocks in the last two stages, block i of n at "
        "rate * i / n, in [0, 1) (default: the method's: bignas 0.2, as AttentiveNAS's config; others 0).",
        OPTIMIZER)
    mixed_precision: str = setting(
        "none", f"Compute precision: one of {list(PRECISIONS)}. bfloat16 / float16: the layers compute in 16 bits "
        "while weights, BN statistics, logits and losses stay float32 (Keras mixed policies; float16 with dynamic "
        "loss scaling); checkpoints, evaluation and exports are float32.", OPTIMIZER)
    warmup_fraction: float | None = setting(
        None, "P_fm: share of the run that trains the full model only (DεpS 0.5, fOFA 5/185, OFA/CompOFA the "
        "teacher's share).", METHOD)
    epsilon_start: float = setting(1e-4, "ε at the first shrinking step, in (0, 1].", METHOD)
    epsilon_ramp_epochs: float | None = setting(
        None, "Epochs over which ε rises to 1 (default: the DεpS paper's 5 of 270 epochs as a share of epochs).",
        METHOD)
    epsilon_mode: str = setting("linear", "linear (the DεpS paper) or lr_ratio (the public DεpS code).", METHOD)
    num_subnets: int | None = setting(None, "Subnets per step besides the full model (method default).", METHOD)
    kd_temperature: float = setting(1.0, "Distillation temperature T (losses are T^2-scaled), > 0.", METHOD)
    size_sampling: str | None = setting(
        None, f"Input size of each network of a step: one of {list(SIZE_SAMPLING)} (default: the method's: "
        "bignas per_network, others per_batch). per_batch: every network at the batch's size (one of image_size "
        "per batch); per_network: the batch comes at the largest size and each network resizes it (bicubic) to "
        "its own, the max net the largest, the min net the smallest, random ones a random one (AttentiveNAS).",
        METHOD)
    full_kernel: int | None = setting(
        None, "Depthwise kernel of the full network the method trains on the labels and distils from, when "
        "larger than the space's (default: the method's: compofa 7, CompOFA's teacher being OFA's kernel-7 "
        "network; others 0, the space's max net).", METHOD)
    kernel_mode: str = setting(
        "center_crop", f"Elastic kernel: one of {list(KERNEL_MODES)} (transform: OFA's learned kernel transform).",
        METHOD)
    bn_calibration_images: int = setting(
        2000, "Images used to recalibrate BN before evaluating a subnet.", SCHEDULE)
    checkpoint_every_steps: int | None = setting(
        None, "Also checkpoint every N global steps (besides every epoch), so a killed run loses at most N steps.",
        SCHEDULE)
    tensorboard_update_freq: int | None = setting(
        None, "Also write TensorBoard scalars (losses, ε, phase) every N global steps; default: once per epoch.",
        SCHEDULE)
    labelled_per_class: int = setting(
        0, "Keep only this many labelled images per class of the train split (seeded); 0 keeps every label.",
        TRANSFER)
    unlabelled_dataset: str | None = setting(
        None, "Unlabelled images for semi-supervised training: 'rest' (the train images labelled_per_class "
        "leaves out) or a dataset spec like dataset (its labels are ignored). Unset: supervised.", TRANSFER)
    unlabelled_ratio: int = setting(
        1, "μ: unlabelled images per labelled image in a batch (TOFA: 1, FixMatch: 7).", TRANSFER)
    unlabelled_weight: float = setting(1.0, "λ_u: weight of the max net's FixMatch loss.", TRANSFER)
    fixmatch_threshold: float = setting(
        0.95, "FixMatch confidence threshold in (0, 1]: an unlabelled image gets a pseudo-label when the max "
        "net's top probability on its weak view reaches it.", TRANSFER)
    init_checkpoint: str | None = setting(
        None, "Start from a pretrained supernet: a run directory or a .weights.h5 of the same space, width and "
        "class count (ignored when resuming). A run on the same dataset should share this run's seed and "
        "validation_fraction, or its training images land in this validation split (a warning says so).",
        TRANSFER, path="input")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_saved(cls, values: Any) -> "RunConfig":
        """The settings of a saved run (config.json's "run"), read strictly: a tool must
        never measure or resume a run with settings it did not have.

        A setting every version saved (`REQUIRED_SETTINGS`) must be there; one added since
        that an older run lacks takes the value that run computed (`LEGACY_VALUES`), never
        today's default. Each value must have its setting's type; an unknown key is an error
        (the run was written by another version).

        Raises:
          OfaError: naming the setting (`dataset is missing ...`, `image_size=[]: expected ...`),
            its value shown as the file holds it (JSON).
        """
        if not isinstance(values, dict):
            raise OfaError(f"run={shown(values, as_json=True)}: expected an object holding the run's settings")
        fields = dataclasses.fields(cls)
        unknown = sorted(set(values) - {f.name for f in fields})
        if unknown:
            raise OfaError(f"{shown(unknown[0], as_json=True)}: not a setting of this version of ofa_tf")
        missing = [f.name for f in fields if f.name in REQUIRED_SETTINGS and f.name not in values]
        if missing:
            more = f", and {len(missing) - 1} more settings" if len(missing) > 1 else ""
            raise OfaError(f"{missing[0]} is missing from \"run\"{more} (every ofa_tf run records "
                           f"{'them' if more else 'it'}; a missing setting is not guessed)")
        config = cls(**{f.name: _saved_value(f.name, f.type, values[f.name] if f.name in values
                                             else LEGACY_VALUES[f.name]) for f in fields})
        if config.bn_calibration_images <= 0:  # tools recalibrate with it; every version required > 0
            raise OfaError(f"bn_calibration_images={config.bn_calibration_images}: expected a positive integer")
        return config

    @property
    def augmentation(self) -> str:
        """The augmentation the run uses: `augment`, or the default for its image sizes."""
        return self.augment or default_augment(self.image_size)

    def check(self) -> "RunConfig":
        """The range checks of the settings that need no other part of the library; returns
        self. `RunPlan.resolve` (ofa_tf/runs/plan.py) runs them, then the checks that belong to
        the objects the settings configure.

        Raises:
          OfaError: naming the first bad setting (`epochs=0: expected a positive number`).
        """
        for ok, message in self._checks():
            if not ok:
                raise OfaError(message)
        return self

    def _checks(self) -> list[tuple[bool, str]]:
        def is_positive(value: float) -> bool:
            return value > 0 and math.isfinite(value)

        positive = lambda name: (is_positive(getattr(self, name)),  # noqa: E731
                                 f"{name}={getattr(self, name)}: expected a positive number")
        optional_positive = lambda name: (getattr(self, name) is None or is_positive(getattr(self, name)),  # noqa: E731
                                          f"{name}={getattr(self, name)}: expected a positive number")
        sizes = ",".join(str(s) for s in self.image_size)
        return [
            optional_positive("bn_virtual_batch"),
            (not self.bn_virtual_batch or self.bn_virtual_batch < 0 or self.batch_size % self.bn_virtual_batch == 0,
             f"bn_virtual_batch={self.bn_virtual_batch}: expected a divisor of batch_size={self.batch_size}"),
            (self.unused_parameters in UNUSED_PARAMETERS,
             f"unused_parameters={self.unused_parameters!r}: expected one of {list(UNUSED_PARAMETERS)}"),
            (self.sort_momentum in SORT_MOMENTUM,
             f"sort_momentum={self.sort_momentum!r}: expected one of {list(SORT_MOMENTUM)}"),
            (self.lr_schedule is None or self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule={self.lr_schedule!r}: expected one of {list(LR_SCHEDULES)}"),
            (bool(self.image_size) and min(self.image_size) >= MIN_IMAGE_SIZE,
             f"image_size={sizes}: expected sizes >= {MIN_IMAGE_SIZE}"),
            positive("epochs"), optional_positive("steps_per_epoch"), positive("batch_size"),
            optional_positive("learning_rate"), optional_positive("checkpoint_every_steps"),
            optional_positive("tensorboard_update_freq"),
            positive("bn_calibration_images"),
            optional_positive("grad_clip"),
            (self.seed >= 0, f"seed={self.seed}: expected an integer >= 0"),
            (self.dropout is None or 0 <= self.dropout < 1, f"dropout={self.dropout}: expected a rate in [0, 1)"),
            (self.drop_connect is None or 0 <= self.drop_connect < 1,
             f"drop_connect={self.drop_connect}: expected a rate in [0, 1)"),
            (self.optimizer is None or self.optimizer in OPTIMIZERS,
             f"optimizer={self.optimizer}: expected one of {list(OPTIMIZERS)}"),
            (self.size_sampling is None or self.size_sampling in SIZE_SAMPLING,
             f"size_sampling={self.size_sampling}: expected one of {list(SIZE_SAMPLING)}"),
            (self.full_kernel is None or self.full_kernel == 0 or (self.full_kernel > 0 and self.full_kernel % 2 == 1),
             f"full_kernel={self.full_kernel}: expected 0 or an odd kernel size"),
            (self.lr_warmup_epochs is None or 0 <= self.lr_warmup_epochs < math.inf,
             f"lr_warmup_epochs={self.lr_warmup_epochs}: expected >= 0"),
            (0 <= self.momentum < 1, f"momentum={self.momentum}: expected a value in [0, 1)"),
            (self.weight_decay is None or 0 <= self.weight_decay < math.inf,
             f"weight_decay={self.weight_decay}: expected >= 0"),
            (self.labelled_per_class >= 0,
             f"labelled_per_class={self.labelled_per_class}: expected >= 0 (0 keeps every label)"),
            (self.unlabelled_ratio >= 1, f"unlabelled_ratio={self.unlabelled_ratio}: expected a positive integer"),
        ]


def _saved_value(name: str, annotation: str, value: Any) -> Any:
    """`value` of setting `name` (type `annotation`, as the dataclass spells it), checked."""
    optional = annotation.endswith(" | None")
    kind = annotation.removesuffix(" | None")
    if value is None and optional:
        return None
    nullable = " (or null)" if optional else ""
    if kind == "str":
        if isinstance(value, str):
            return value
        raise OfaError(f"{name}={shown(value, as_json=True)}: expected a string{nullable}")
    if kind == "int":
        if is_int(value):
            return value
        raise OfaError(f"{name}={shown(value, as_json=True)}: expected an integer{nullable}")
    if kind == "float":
        if is_finite_number(value):
            return float(value)
        raise OfaError(f"{name}={shown(value, as_json=True)}: expected a finite number{nullable}")
    if kind == "tuple[int, ...]":
        if isinstance(value, list) and value and all(is_int(v) and v > 0 for v in value):
            return tuple(value)
        raise OfaError(f"{name}={shown(value, as_json=True)}: expected a non-empty list of positive integers")
    raise TypeError(f"RunConfig.{name}: no saved form for type {annotation}")  # a new field's type: teach it here

