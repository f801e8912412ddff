"""`ElasticStage`: a run of elastic blocks with elastic depth."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.layers.base import ElasticComposite
from ofa_tf.layers.block import ElasticInvertedResidual

# Columns of the per-block choice matrix a stage takes: kernel size, mid channels, SE channels.
BLOCK_CHOICE_FIELDS = ("kernel_size", "mid_channels", "se_channels")


def resolve_block_class(block_class: type | str | None) -> type:
    """`ElasticInvertedResidual`, a subclass of it, or its registered Keras name."""
    if block_class is None:
        return ElasticInvertedResidual
    if isinstance(block_class, str):
        found = keras.saving.get_registered_object(block_class)
        if found is None:
            raise OfaError(f"block_class={block_class!r}: not a registered Keras object "
                           "(decorate it with @keras.saving.register_keras_serializable)")
        block_class = found
    if not (isinstance(block_class, type) and issubclass(block_class, ElasticInvertedResidual)):
        raise OfaError(f"block_class={block_class!r}: expected a subclass of ElasticInvertedResidual")
    return block_class


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticStage(ElasticComposite):
    """Up to `max(depths)` blocks; the first `depth` run, the rest pass their input through.

    Skipped blocks are trailing stride-1 blocks with identity skips, so skipping one is
    exactly the subnet without it. With a tensor `depth`, each optional
    block sits in a `tf.cond`, so a shallow subnet does not pay for the deep blocks.

    Call arguments:
      depth: blocks to run (int or scalar int32 tensor; default all).
      block_choices: per block slot, `(kernel_size, mid_channels, se_channels)`: an int32
        tensor of shape `(max_depth, 3)`, or a list of such rows or of dicts with those keys.
      out_channels: stage width (int or tensor; default the max).
      drop_connect: whether blocks with a drop-connect rate drop their residual branch
        (bool or scalar bool tensor; `ElasticInvertedResidual`).

    `zero_residual_gamma` is passed to the blocks (`ElasticInvertedResidual`) when set.
    """

    def __init__(self, out_channels: int, depths: Sequence[int] = (2, 3, 4),
                 kernel_sizes: Sequence[int] = (3, 5, 7), expand_ratios: Sequence[float] = (3.0, 4.0, 6.0),
                 strides: int = 1, activation: str = "relu", use_se: bool = False,
                 first_residual: bool | None = None, kernel_mode: str = "center_crop",
                 bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, block_class: type | str | None = None,
                 padding: str = "same", zero_residual_gamma: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.depths = tuple(sorted(int(d) for d in depths))
        if not self.depths or self.depths[0] < 1:
            raise OfaError(f"depths={list(depths)}: expected positive block counts")
        self.first_residual = first_residual
        self.block_class = resolve_block_class(block_class)
        # The blocks keep the settings the stage was given (read back through `blocks[0]`); a
        # block class of a user's that predates an option is not given it unless it is set.
        options = {"zero_residual_gamma": True} if zero_residual_gamma else {}
        self.blocks = [
            self.block_class(
                out_channels, kernel_sizes, expand_ratios, strides if i == 0 else 1, activation, use_se,
                first_residual if i == 0 else True, kernel_mode, bn_momentum, bn_epsilon,
                padding=padding, name=f"{self.name}_block{i}", **options)
            for i in range(self.max_depth)]

    @property
    def strides(self) -> int:
        """The stage's stride: its first block's (the others have stride 1)."""
        return self.blocks[0].strides

    @property
    def out_channels(self) -> int:
        return self.blocks[0].out_channels

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    @property
    def min_depth(self) -> int:
        return self.depths[0]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    @staticmethod
    def _choice(block_choices, i: int) -> dict[str, Any]:
        if block_choices is None:
            return {}
        if isinstance(block_choices, (list, tuple)):
            row = block_choices[i] if i < len(block_choices) else {}
            return dict(row) if isinstance(row, Mapping) else dict(zip(BLOCK_CHOICE_FIELDS, row))
        return {field: block_choices[i, j] for j, field in enumerate(BLOCK_CHOICE_FIELDS)}

    def call(self, inputs, depth=None, block_choices=None, out_channels=None, training=None, drop_connect=False):
        x = inputs
        for i, block in enumerate(self.blocks):
            extra = {"drop_connect": drop_connect} if getattr(block, "drop_connect_rate", 0) > 0 else {}
            run = lambda x=x, i=i, block=block, extra=extra: block(  # noqa: E731
                x, out_channels=out_channels, training=training, **self._choice(block_choices, i), **extra)
            if i < self.min_depth or depth is None:
                x = run()
            elif isinstance(depth, int):
                if i >= depth:
                    break
                x = run()
            else:
                x = tf.cond(depth > i, run, lambda x=x: tf.identity(x))
        return x

    def output_channels(self, input_channels: int | None) -> int:
        return self.out_channels

    def apply_static(self, x, depth: int | None = None,
                     block_choices: Sequence[Mapping[str, Any]] | None = None, out_channels: int | None = None):
        depth = self.max_depth if depth is None else depth
        if depth not in self.depths:
            raise OfaError(f"{self.name}: depth={depth}: expected one of {list(self.depths)}")
        for i in range(depth):
            x = self.blocks[i].apply_static(x, out_channels=out_channels, **self._choice(block_choices, i))
        return x

    def get_config(self):
        config = super().get_config()
        config.update(self.blocks[0].shared_config(), depths=list(self.depths), first_residual=self.first_residual,
                      block_class=keras.saving.get_registered_name(self.block_class))
        return config
