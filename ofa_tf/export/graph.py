"""Rewrites of a static Keras subnet's graph before TFLite conversion.

`fold_gate_scales`: a squeeze-excite gate is `hard_sigmoid(conv(s)) = relu6(conv(s) + 3) / 6`.
The converter folds the `+ 3` into the conv's bias and the ReLU6 into the conv, but keeps
the `/ 6` as a multiply by the constant 1/6. A float16 model stores that constant as
float16 too (0.16663, 2.4e-4 low). Every gate of every block is then off in the same
direction, so the error adds up instead of averaging out: on trained subnets that constant
alone made nearly all of the float16 model's logit error, and folding it leaves about what
rounding the weights themselves costs (docs/deployment.md).

Written as `min(relu(conv'(s)), 1)`, with the kernel divided by 6 and the bias `(b + 3) / 6`,
the gate computes the same function (float32 TFLite within 1e-5), and the only constant
left (1) is exact in float16.

Only float16 conversion uses it (`keras_to_tflite`). Float32 and full-int8 models came out
the same with and without it (docs/deployment.md), and the folded gate runs two small ops
(RELU, MINIMUM) where the original runs one (MUL).

`batch_norm_producers` / `folded_batch_norm_weights`: the BNs that follow a conv or dense
layer, and that layer's kernel and bias with the BN folded in. QAT fine-tunes the folded
layers (`qat.to_tf_keras(..., fold_batch_norm=True)`), so it fake-quantises the kernels the
converter writes.

The functions take plain functional Keras models (the static subnets of
`Supernet.get_subnet`); the `.keras` and SavedModel exports keep the original graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras
import numpy as np

# Layers whose whole output scales with (kernel, bias): scaling both scales the output.
_LINEAR_WITH_BIAS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def inbound_layer_names(node_args: Any) -> list[str]:
    """Names of the layers feeding one node of a Keras 3 functional config."""
    if isinstance(node_args, dict):
        if node_args.get("class_name") == "__keras_tensor__":
            return [node_args["config"]["keras_history"][0]]
        return [n for v in node_args.values() for n in inbound_layer_names(v)]
    if isinstance(node_args, (list, tuple)):
        return [n for v in node_args for n in inbound_layer_names(v)]
    return []


def _is_functional(model: keras.Model) -> bool:
    # Keras 3 builds `keras.Model(inputs, outputs)` as its (private) Functional class;
    # subclassed models have no layer graph to rewrite.
    return isinstance(model, keras.Model) and type(model).__name__ in ("Functional", "Sequential")


def _sole_linear_producers(model: keras.Model, is_consumer, needs_bias: bool) -> dict[str, str]:
    """{producer name: consumer name} for each layer `is_consumer` accepts whose only input
    is a linear conv / dense layer (with a bias if `needs_bias`) that feeds nothing else."""
    if not _is_functional(model):
        return {}
    entries = model.get_config()["layers"]
    inbound = {e["name"]: [n for node in e.get("inbound_nodes", []) for n in inbound_layer_names(node["args"])]
               for e in entries}
    consumers = Counter(n for names in inbound.values() for n in names)
    producers = {}
    for layer in model.layers:
        if not is_consumer(layer):
            continue
        sources = inbound.get(layer.name, [])
        if len(sources) != 1 or consumers[sources[0]] != 1:
            continue
        source = model.get_layer(sources[0])
        if (isinstance(source, _LINEAR_WITH_BIAS) and (source.use_bias or not needs_bias)
                and source.get_config().get("activation", "linear") == "linear"):
            producers[source.name] = layer.name
    return producers


def gate_producers(model: keras.Model) -> dict[str, str]:
    """{producer layer name: gate layer name} for every `Activation("hard_sigmoid")` fed
    only by a linear conv / dense layer with a bias that feeds nothing else."""
    return _sole_linear_producers(
        model, lambda layer: (isinstance(layer, keras.layers.Activation)
                              and layer.get_config()["activation"] == "hard_sigmoid"), needs_bias=True)


def batch_norm_producers(model: keras.Model) -> dict[str, str]:
    """{producer layer name: BN layer name} for every BatchNormalization over the last axis fed
    only by a linear conv / dense layer that feeds nothing else: the BNs inference can fold."""
    def is_last_axis_bn(layer):
        if not isinstance(layer, keras.layers.BatchNormalization):
            return False
        axis = layer.get_config()["axis"]
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        return axis == -1 or axis == len(layer.input.shape) - 1
    return _sole_linear_producers(model, is_last_axis_bn, needs_bias=False)


def folded_batch_norm_weights(producer: keras.layers.Layer, batch_norm: keras.layers.BatchNormalization
                              ) -> list[np.ndarray]:
    """[kernel, bias] of `producer` with the inference-mode `batch_norm` after it folded in:
    `bn(conv(x)) = conv'(x)` with each output channel's kernel scaled by gamma / sqrt(var + eps)
    and the bias moved and scaled to match."""
    config = batch_norm.get_config()
    weights = list(batch_norm.get_weights())
    gamma = weights.pop(0) if config["scale"] else 1.0
    beta = weights.pop(0) if config["center"] else 0.0
    mean, variance = weights
    scale = gamma / np.sqrt(variance + config["epsilon"])
    kernel, *rest = producer.get_weights()
    bias = rest[0] if rest else np.zeros_like(mean)
    if isinstance(producer, keras.layers.DepthwiseConv2D):  # output channel c * multiplier + m
        folded = kernel * scale.reshape(kernel.shape[-2:])
    else:
        folded = kernel * scale
    return [folded.astype(kernel.dtype), ((bias - mean) * scale + beta).astype(kernel.dtype)]


def fold_gate_scales(model: keras.Model) -> keras.Model:
    """`model` with each hard-sigmoid gate's 1/6 and +3 folded into the layer feeding it
    (module docstring); `model` itself when it has no such gate."""
    producers = gate_producers(model)
    if not producers:
        return model
    gates = set(producers.values())

    def clone(layer):
        if layer.name in gates:
            return keras.layers.ReLU(max_value=1.0, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name in producers:
            kernel, bias = weights
            weights = [kernel / 6.0, (bias + 3.0) / 6.0]
        folded.get_layer(layer.name).set_weights(weights)
    return folded


__all__ = ["batch_norm_producers", "fold_gate_scales", "folded_batch_norm_weights", "gate_producers",
           "inbound_layer_names"]
