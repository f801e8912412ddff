"""`RunPlan`: a run's settings resolved, once, into the objects the run needs.

A `RunConfig` is data: the settings as the user gave them, with the range checks that need
no other part of the library. `RunPlan.resolve` does the rest, once per process: every check
that belongs to a library object (the space, the method, the strategy, the data specs, the
model's losses) and the space and the method themselves. The command line, `train` and
`PreparedRun` take the plan and pass it on, so no setting is checked twice and no method is
built twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ofa_tf.choices import PER_BATCH, PER_NETWORK, check_augment, check_kernel_mode, check_precision, check_strategy
from ofa_tf.data.pipeline import check_validation_fraction
from ofa_tf.data.semi_supervised import REST
from ofa_tf.data.sources import check_dataset_spec, check_label_offset
from ofa_tf.errors import OfaError
from ofa_tf.io import unwritable_reason
from ofa_tf.layers.batch_norm import set_virtual_batch
from ofa_tf.layers.block_import import import_block_class
from ofa_tf.models.supernet import check_dropout, check_full_kernel
from ofa_tf.runs.config import RunConfig, check_init_checkpoint_path
from ofa_tf.spaces import SearchSpace, get_space
from ofa_tf.training import Method, OnceForAllModel, PhaseCosineSchedule, build_method
from ofa_tf.training.ofa_model import check_loss_settings
from ofa_tf.training.optimizer import ReferenceSGD


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A checked `RunConfig` with its search space and training method.

    Attributes:
      config: the settings (image sizes sorted, each once).
      space: the search space at the run's width and image sizes.
      method: the training method with the run's knobs. Built before the data is read, so
        an ε ramp given in epochs is kept as a share of the run when the steps per epoch are
        only known from the data (`EpsilonSchedule.for_run`).
    """

    config: RunConfig
    space: SearchSpace
    method: Method

    @classmethod
    def resolve(cls, config: RunConfig) -> "RunPlan":
        """Checks every setting of `config` and builds its space and method.

        Raises:
          OfaError: naming the first bad setting (`epochs=0: expected ...`), before any data
            is read or anything is written.
        """
        config = dataclasses.replace(config, image_size=tuple(sorted(set(config.image_size))))
        config.check()
        check_strategy(config.strategy)
        check_validation_fraction(config.validation_fraction)
        check_kernel_mode(config.kernel_mode)
        if config.dropout is not None:
            check_dropout(config.dropout)
        check_loss_settings(config.kd_temperature, config.label_smoothing, config.fixmatch_threshold,
                            config.unlabelled_weight)
        check_augment(config.augment)
        check_precision(config.mixed_precision)
        import_block_class(config.block_class)  # the user's block: it imports, and is an elastic block
        _check_data(config)
        space = get_space(config.space, config.width_mult, config.image_size)
        method = build_method(
            config.method, space, steps_per_epoch=config.steps_per_epoch, epochs=config.epochs,
            warmup_fraction=config.warmup_fraction, epsilon_start=config.epsilon_start,
            epsilon_ramp_epochs=config.epsilon_ramp_epochs, epsilon_mode=config.epsilon_mode,
            num_subnets=config.num_subnets, grad_clip=config.grad_clip, grad_clip_mode=config.grad_clip_mode,
            weight_decay=config.weight_decay, weight_decay_form=config.weight_decay_form,
            lr_schedule=config.lr_schedule, dropout=config.dropout, drop_connect=config.drop_connect,
            size_sampling=config.size_sampling, optimizer=config.optimizer, full_kernel=config.full_kernel,
            unused_parameters=config.unused_parameters, sort_momentum=config.sort_momentum)
        if method.full_kernel:  # the full network's kernel must fit the space (`Supernet` checks it)
            check_full_kernel(method.full_kernel, space)
        return cls(config, space, method)

    def method_defaults(self) -> dict[str, Any]:
        """What each setting of `METHOD_DEFAULTED` is in this run: its value, or for None the
        method's (the resume check compares these with a saved run's values)."""
        m = self.method
        return {"dropout": m.dropout, "drop_connect": m.drop_connect, "optimizer": m.optimizer_name,
                "size_sampling": PER_NETWORK if m.resolution_per_network else PER_BATCH,
                "full_kernel": m.full_kernel or 0}

    @property
    def training_resolutions(self) -> tuple[int, ...]:
        """The sizes the training batches come at: the space's (one per batch), or its largest
        when each network resizes the batch to its own (`Method.resolution_per_network`)."""
        sizes = self.space.resolutions
        return (max(sizes),) if self.method.resolution_per_network else tuple(sizes)

    @property
    def uses_epsilon(self) -> bool:
        """Whether a phase of the method has an ε schedule (the ε settings mean something)."""
        return any(phase.epsilon is not None for phase in self.method.phases)

    def learning_rate_schedule(self, steps_per_epoch: int) -> PhaseCosineSchedule:
        """The run's learning rate per global step (`Method.learning_rate_schedule`), at
        `learning_rate` or the method's rate for the batch size; `lr_warmup_epochs` replaces
        the method's warm-ups."""
        c = self.config
        warmup = None if c.lr_warmup_epochs is None else int(round(c.lr_warmup_epochs * steps_per_epoch))
        return self.method.learning_rate_schedule(c.epochs * steps_per_epoch, c.batch_size, c.learning_rate, warmup)

    def optimizer(self, learning_rate, steps_per_epoch: int) -> ReferenceSGD:
        """The run's optimizer (`Method.optimizer`) at `learning_rate` (a schedule or a number)."""
        c = self.config
        return self.method.optimizer(learning_rate, c.epochs * steps_per_epoch, c.momentum)

    def build_model(self, num_classes: int) -> OnceForAllModel:
        """The built model this run trains (`build_model`)."""
        return build_model(self.config, self.space, num_classes, self.method)


def build_model(config: RunConfig, space: SearchSpace, num_classes: int, method: Method) -> OnceForAllModel:
    """The built `OnceForAllModel` of a run's settings (its frozen teacher only if a phase uses
    one): the same for a new run, a resumed one and a saved one a tool loads."""
    model = OnceForAllModel(
        space, num_classes=num_classes, dropout=config.dropout if config.dropout is not None else method.dropout,
        kernel_mode=config.kernel_mode,
        block_class=import_block_class(config.block_class), max_subnets=method.max_subnets,
        kd_temperature=config.kd_temperature,
        label_smoothing=config.label_smoothing, frozen_teacher=any(p.teacher == "frozen" for p in method.phases),
        fixmatch_threshold=config.fixmatch_threshold, unlabelled_weight=config.unlabelled_weight,
        subnet_dropout=method.subnet_dropout, full_kernel=method.full_kernel,
        zero_residual_gamma=method.zero_residual_gamma, drop_connect=method.drop_connect,
        resolution_per_network=method.resolution_per_network and len(space.resolutions) > 1)
    model.build()
    set_virtual_batch(model, config.bn_virtual_batch)  # (the frozen teacher's BNs too)
    return model


def _check_data(config: RunConfig) -> None:
    """The dataset specs (kind, and that the file or directory exists), the TFDS directory,
    the pretrained start's path."""
    check_label_offset(config.label_offset, config.dataset)
    check_dataset_spec(config.dataset, "dataset")
    if config.unlabelled_dataset is not None and config.unlabelled_dataset != REST:
        check_dataset_spec(config.unlabelled_dataset, "unlabelled_dataset")
    if config.data_dir is not None:
        reason = unwritable_reason(config.data_dir, directory=True)
        if reason and "not writable" not in reason:  # read-only is fine for prepared data
            raise OfaError(f"data_dir={config.data_dir}: {reason}")
        if not any((spec or "").startswith("tfds:") for spec in (config.dataset, config.unlabelled_dataset)):
            raise OfaError(f"data_dir={config.data_dir}: only used by tfds: datasets (dataset={config.dataset})")
    if config.init_checkpoint is not None:
        check_init_checkpoint_path(config.init_checkpoint)
