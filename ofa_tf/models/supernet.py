"""`Supernet`: the weight-shared once-for-all model of a search space."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.layers import ElasticBatchNormalization, ElasticConv2D, ElasticDense, ElasticStage
from ofa_tf.layers.stage import resolve_block_class
from ofa_tf.layers.base import ElasticLayer, activation_fn, static_activation
from ofa_tf.models.arch_tensor import ArchTensorLayout
from ofa_tf.spaces import Arch, SearchSpace, get_space
from ofa_tf.spaces.arch_plan import IMAGE_CHANNELS, STEM_KERNEL, STEM_STRIDE, plan


def check_full_kernel(full_kernel: int | None, space: SearchSpace) -> int | None:
    """`full_kernel` (None or 0: none) is an odd size at least the largest kernel of the space."""
    if not full_kernel:
        return None
    largest = max(k for stage in space.stages for k in stage.kernels)
    if isinstance(full_kernel, bool) or not isinstance(full_kernel, (int, np.integer)) or full_kernel % 2 == 0 \
            or full_kernel < largest:
        raise OfaError(f"full_kernel={full_kernel!r}: expected an odd kernel size >= the space's largest ({largest})")
    return int(full_kernel)


def check_dropout(dropout: float) -> None:
    """The classifier's dropout rate must be in [0, 1)."""
    if not 0 <= dropout < 1:
        raise OfaError(f"dropout={dropout!r}: expected a rate in [0, 1)")


@keras.saving.register_keras_serializable(package="ofa_tf")
class Supernet(keras.Model):
    """A MobileNet-style supernet holding every subnet of `space` in shared weights.

    `model(x, arch=...)` runs one subnet; `arch` is an `Arch`, a dict, `"max"`/`"min"`,
    or an int32 tensor from `arch_tensor` (what training passes, so one trace serves
    every subnet). `get_subnet(arch)` returns a plain functional Keras model of that
    subnet with its weights copied out.

    Args:
      space: a space name (`ofa_mbv3`, `compofa`, `proxyless`, `tofa`) or a `SearchSpace`.
      num_classes: classifier outputs.
      width_mult: channel multiplier of a named space.
      dropout: dropout rate before the classifier.
      resolutions: input sizes to allow instead of the space's own (e.g. `[32]`).
      kernel_mode: `center_crop` or OFA's learned `transform` for smaller kernels.
      block_class: `ElasticInvertedResidual` or a registered subclass.
      bn_momentum, bn_epsilon: batch-norm settings (OFA's: 0.9 in Keras terms, 1e-5).
      full_kernel: the depthwise kernel of the full network when it is larger than the space's
        (CompOFA trains OFA's kernel-7 network as its teacher, then the space's kernel-3/5
        subnets from it): the elastic stages (those of more than one block) hold their depthwise
        weights at this size, the subnets use the centres, and the full network (`full_arch`,
        and `call` without an arch) runs at it. None: the space's max net is the full network.
      zero_residual_gamma: blocks with an identity skip start with their last BN's gamma at 0
        (BigNAS's initialisation; `ElasticInvertedResidual`).
      drop_connect: BigNAS's drop-connect rate (AttentiveNAS `set_dropout_rate`): the residual
        blocks of the last two stages drop their branch with probability
        `drop_connect * i / n` (i: the block's index among all n blocks of the max net), in
        training and only when `call(dropout=True)` (the max net's regularisation).
    """

    def __init__(self, space: str | SearchSpace | dict = "ofa_mbv3", num_classes: int = 1000,
                 width_mult: float = 1.0, dropout: float = 0.1, resolutions: Sequence[int] | None = None,
                 kernel_mode: str = "center_crop", block_class: type | str | None = None,
                 bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, full_kernel: int | None = None,
                 zero_residual_gamma: bool = False, drop_connect: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(space, dict):
            space = SearchSpace.from_config(space)
        self.space = get_space(space, width_mult, resolutions)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
            raise OfaError(f"num_classes={num_classes!r}: expected a positive integer")
        check_dropout(dropout)
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout)
        self.kernel_mode = kernel_mode
        self.block_class = resolve_block_class(block_class)
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.full_kernel = check_full_kernel(full_kernel, self.space)
        if not 0 <= drop_connect < 1:
            raise OfaError(f"drop_connect={drop_connect!r}: expected a rate in [0, 1)")
        self.zero_residual_gamma, self.drop_connect = bool(zero_residual_gamma), float(drop_connect)
        self.layout = ArchTensorLayout(self.space)
        sp = self.space

        def bn(name: str) -> ElasticBatchNormalization:
            return ElasticBatchNormalization(self.bn_momentum, self.bn_epsilon, name=name)

        self.stem_conv = ElasticConv2D(max(sp.stem_widths), STEM_KERNEL, strides=STEM_STRIDE, padding=sp.padding,
                                       name="stem_conv")
        self.stem_bn = bn("stem_bn")
        self.stages = []
        for s, spec in enumerate(sp.stages):
            kernels = sorted({*spec.kernels, self.full_kernel}) if self._has_full_kernel(s) else spec.kernels
            self.stages.append(ElasticStage(
                max(spec.widths), spec.depths, kernels, spec.expands, spec.stride, spec.activation,
                spec.use_se, sp.block_residual(s, 0), kernel_mode, self.bn_momentum, self.bn_epsilon,
                self.block_class, padding=sp.padding, zero_residual_gamma=self.zero_residual_gamma,
                name=f"stage{s}"))
        self._set_drop_connect_rates()
        last_width = max(sp.stages[-1].widths)
        self.final_expand_conv = self.final_expand_bn = self.head_conv = None
        if sp.final_expand_ratio:
            self.final_expand_conv = ElasticConv2D(sp.final_expand_width(last_width), 1, name="final_expand_conv")
            self.final_expand_bn = bn("final_expand_bn")
        if sp.head_widths:
            self.head_conv = ElasticConv2D(max(sp.head_widths), 1, use_bias=sp.head_bias, name="head_conv")
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.classifier = ElasticDense(self.num_classes, name="classifier")

    def _has_full_kernel(self, stage_index: int) -> bool:
        return bool(self.full_kernel) and self.space.stages[stage_index].max_depth > 1

    def _set_drop_connect_rates(self) -> None:
        """AttentiveNAS's rates: block i of the max net's n blocks, in the last two stages, at
        `drop_connect * i / n` (its `set_dropout_rate`, `drop_connect_only_last_two_stages`)."""
        if not self.drop_connect:
            return
        blocks = [(s, block) for s, stage in enumerate(self.stages) for block in stage.blocks]
        last_two = {len(self.stages) - 2, len(self.stages) - 1}
        for i, (s, block) in enumerate(blocks):
            if s in last_two and block.residual:  # (it drops only a residual branch)
                block.drop_connect_rate = self.drop_connect * i / len(blocks)

    def full_arch(self, resolution: int | None = None) -> Arch:
        """The full network: the space's max arch, at `full_kernel` in the elastic stages when
        set (CompOFA's kernel-7 teacher, not a subnet of its space: `Arch` unvalidated)."""
        arch = self.space.max_arch(resolution)
        if not self.full_kernel:
            return arch
        kernels = tuple((self.full_kernel,) * len(ks) if self._has_full_kernel(s) else ks
                        for s, ks in enumerate(arch.kernels))
        return dataclasses.replace(arch, kernels=kernels)

    def full_arch_tensor(self) -> tf.Tensor:
        """`full_arch` as the int32 tensor a traced call takes."""
        return tf.constant(self.layout.to_vector(self.full_arch()), tf.int32)

    # ------------------------------------------------------------------ building
    def build(self, input_shape=None):
        size = max(self.space.resolutions)
        shape = (None, size, size, IMAGE_CHANNELS)
        self.stem_conv.build(shape)
        shape = self.stem_conv.compute_output_shape(shape)
        self.stem_bn.build(shape)
        for stage in self.stages:
            stage.build(shape)
            shape = stage.compute_output_shape(shape)
        if self.final_expand_conv is not None:
            self.final_expand_conv.build(shape)
            shape = self.final_expand_conv.compute_output_shape(shape)
            self.final_expand_bn.build(shape)
        if self.head_conv is not None:
            self.head_conv.build((None, 1, 1, shape[-1]))
            shape = self.head_conv.compute_output_shape((None, 1, 1, shape[-1]))
        self.classifier.build((None, shape[-1]))
        self.built = True

    def elastic_layers(self) -> dict[str, "ElasticLayer"]:
        """Every elastic primitive (conv, depthwise, BN, dense) by name; the static twins in
        `get_subnet` carry the same names."""
        return {layer.name: layer for layer in self._flatten_layers(include_self=False)
                if isinstance(layer, ElasticLayer)}

    # ------------------------------------------------------------------ archs
    def parse_arch(self, arch: Any, resolution: int | None = None) -> Arch:
        """Any user form of an arch, validated against this supernet's space."""
        return self.space.parse_arch(arch, resolution=resolution)

    def arch_tensor(self, arch: Any) -> tf.Tensor:
        """The int32 tensor form of `arch` (pass it as `arch=` so one trace serves all)."""
        return tf.constant(self.layout.to_vector(self.parse_arch(arch)), tf.int32)

    def _resolve_arch_tensor(self, arch: Any, inputs) -> tf.Tensor:
        if isinstance(arch, (tf.Tensor, tf.Variable, np.ndarray)):
            return tf.cast(arch, tf.int32)
        size = inputs.shape[1]
        return self.arch_tensor(self.space.parse_arch(arch, resolution=size if size in self.space.resolutions
                                                     else None))

    # ------------------------------------------------------------------ elastic forward
    def call(self, inputs, arch=None, training=None, dropout=True):
        """Runs the subnet `arch` (default: the max net) on `inputs`; `dropout=False` skips
        the classifier's dropout in training mode too (subnets of methods that give dropout to
        the max net only; a Python bool, or a scalar bool tensor).

        `arch=None` runs the full network (the max net, or at `full_kernel`) on the whole
        weights, with no slicing and no per-block `tf.cond`: the same numbers as `full_arch`'s
        tensor, in a graph that traces and runs like the static max model's (inference and the
        semi-supervised max-net step take it; a train step's full model runs in its loop as
        `full_arch`'s tensor). `dropout` also turns the blocks' drop-connect on (`drop_connect`)."""
        lay, sp = self.layout, self.space
        vec = None if arch is None else lay.unpack(self._resolve_arch_tensor(arch, inputs))
        choose = (lambda part, *args: None) if vec is None else (lambda part, *args: part(vec, *args))  # noqa: E731
        stem_act = activation_fn(sp.stem_activation)
        x = stem_act(self.stem_bn(self.stem_conv(inputs, out_channels=choose(lay.stem_width)), training=training))
        extra = {"drop_connect": dropout} if self.drop_connect else {}  # the max net's regularisation too
        for s, stage in enumerate(self.stages):
            x = stage(x, depth=choose(lay.depth, s), block_choices=choose(lay.block_choices, s),
                      out_channels=choose(lay.width, s), training=training, **extra)
        head_act = activation_fn(sp.head_activation)
        if self.final_expand_conv is not None:
            x = self.final_expand_conv(x, out_channels=choose(lay.final_expand_width))
            x = head_act(self.final_expand_bn(x, training=training))
        x = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        if self.head_conv is not None:
            x = head_act(self.head_conv(x, out_channels=choose(lay.head_width)))
        x = tf.reshape(x, (-1, tf.shape(x)[-1]))
        if isinstance(dropout, tf.Tensor):  # chosen in the graph (a train step's loop over networks)
            x = tf.cond(dropout, lambda: self.dropout(x, training=training), lambda: x)
        elif dropout:
            x = self.dropout(x, training=training)
        return tf.cast(self.classifier(x), tf.float32)  # float32 logits (and losses) under mixed precision

    # ------------------------------------------------------------------ untouched weights
    def unused_variable_masks(self, variables: Sequence[tf.Variable], archs: tf.Tensor, ran: tf.Tensor,
                              full_model: tf.Tensor | bool) -> dict[int, tf.Tensor]:
        """{index in `variables`: scalar bool tensor} for the variables a training step can leave
        untouched: False when no network of the step used the variable.

        Args:
          archs: `(n, layout.size)` int32, the step's subnets (`arch_tensor` rows).
          ran: `(n,)` bool, which of those rows the step ran.
          full_model: whether the step also ran the full model (which uses every weight but
            the kernel transforms).

        - Every variable of a block that a stage's depth can skip: untouched when the full
          model did not run and every subnet that ran left the block out.
        - A depthwise layer's kernel transform for size `k` (`kernel_mode="transform"`, OFA's
          7 -> 5 -> 3 chain): untouched unless a subnet ran the block at kernel <= k.

        PyTorch's SGD skips a parameter whose gradient is None, so in the reference code such a
        variable gets no momentum, weight-decay or update that step (a weight used in part, a
        kernel's centre say, is still updated whole); `ReferenceSGD.skip_masks` takes these
        masks and then does no work at all for them. All variables of one block share one mask
        tensor, so the optimizer can skip them together."""
        index = {id(v): i for i, v in enumerate(variables)}
        n = archs.shape[0]
        full_model = tf.convert_to_tensor(full_model, tf.bool)
        masks: dict[int, tf.Tensor] = {}
        for s, stage in enumerate(self.stages):
            depths = tf.stack([self.layout.depth(archs[j], s) for j in range(n)]) if n else tf.zeros((0,), tf.int32)
            kernels = (tf.stack([self.layout.block_choices(archs[j], s)[:, 0] for j in range(n)]) if n
                       else tf.zeros((0, len(stage.blocks)), tf.int32))  # (subnets, blocks)
            for b, block in enumerate(stage.blocks):
                ran_block = ran if b < stage.min_depth else tf.logical_and(ran, depths > b)
                if b >= stage.min_depth:
                    mask = tf.logical_or(full_model, tf.reduce_any(ran_block))
                    for v in block.trainable_variables:
                        if id(v) in index:
                            masks[index[id(v)]] = mask
                transforms = getattr(getattr(block, "depthwise", None), "transforms", None) or {}
                for size, matrix in transforms.items():
                    if id(matrix) in index:
                        masks[index[id(matrix)]] = tf.reduce_any(tf.logical_and(ran_block, kernels[:, b] <= size))
        return masks

    # ------------------------------------------------------------------ static extraction
    def get_subnet(self, arch: Any, name: str | None = None) -> keras.Model:
        """A plain functional Keras model of `arch` with the active weights copied out.

        It uses only built-in Keras layers, so `.keras` files of it load without
        custom objects. BN statistics are copied as they are: recalibrate them first
        (`ofa_tf.training.recalibrate_bn`) for a subnet trained inside a supernet.
        """
        if not self.built:
            self.build()
        arch = self.parse_arch(arch)
        p = plan(self.space, arch)
        sp = self.space
        inputs = keras.Input((arch.resolution, arch.resolution, IMAGE_CHANNELS), name="image")
        x = self.stem_conv.to_static(inputs.shape, out_channels=p.stem_width)(inputs)
        x = self.stem_bn.to_static(x.shape)(x)
        x = static_activation(sp.stem_activation, "stem_act")(x)
        for s, stage in enumerate(self.stages):
            choices = [dict(kernel_size=b.kernel_size, mid_channels=b.mid_channels, se_channels=b.se_channels)
                       for b in p.blocks if b.stage == s]
            x = stage.apply_static(x, depth=arch.depths[s], block_choices=choices, out_channels=arch.widths[s])
        if self.final_expand_conv is not None:
            x = self.final_expand_conv.to_static(x.shape, out_channels=p.final_expand_width)(x)
            x = self.final_expand_bn.to_static(x.shape)(x)
            x = static_activation(sp.head_activation, "final_expand_act")(x)
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
        if self.head_conv is not None:
            x = self.head_conv.to_static(x.shape, out_channels=p.head_width)(x)
            x = static_activation(sp.head_activation, "head_act")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dropout(self.dropout_rate, name="dropout")(x)
        outputs = self.classifier.to_static(x.shape)(x)
        return keras.Model(inputs, outputs, name=name or f"{sp.name}_subnet")

    def refresh_subnet(self, subnet: keras.Model) -> None:
        """Copies this supernet's current weights into `subnet`, a model `get_subnet` made from
        it: afterwards it holds what a fresh `get_subnet` of the same arch would, without
        building its layers again (a run's per-epoch evaluation refreshes the same two subnets).

        Raises NotImplementedError when a layer of the subnet comes from an elastic layer that
        cannot refresh its twin (`ElasticLayer.weights_for`)."""
        elastic = self.elastic_layers()
        for layer in subnet._flatten_layers(include_self=False):
            source = elastic.get(layer.name)  # static twins carry their elastic layer's name
            if source is not None and layer.weights:
                layer.set_weights(source.weights_for(layer))

    def get_config(self):
        config = super().get_config()
        config.update(space=self.space.to_config(), num_classes=self.num_classes, dropout=self.dropout_rate,
                      kernel_mode=self.kernel_mode, block_class=keras.saving.get_registered_name(self.block_class),
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, full_kernel=self.full_kernel,
                      zero_residual_gamma=self.zero_residual_gamma, drop_connect=self.drop_connect)
        return config
