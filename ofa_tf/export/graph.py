"""Rewrites of a static Keras subnet's graph before TFLite conversion.

`fold_gate_scales`: a squeeze-excite gate is `hard_sigmoid(conv(s)) = relu6(conv(s) + 3) / 6`.
The converter folds the `+ 3` into the conv's bias and the ReLU6 into the conv, but keeps
the `/ 6` as a multiply by the constant 1/6. A float16 model stores that constant as
float16 too (0.16663, 2.4e-4 low). Every gate of every block is then off in the same
direction, so the error adds up instead of averaging out. On the max subnet of a DεpS run
(`runs/long/deps`, 2000 test images) that constant alone moved the logits by up to 0.028,
nearly all of the float16 model's 0.029; folded, the model's error fell to 0.011. On the
run continued from it, 0.063 fell to 0.030.

Written as `min(relu(conv'(s)), 1)`, with the kernel divided by 6 and the bias `(b + 3) / 6`,
the gate computes the same function (float32 TFLite within 1e-5), and the only constant
left (1) is exact in float16.

Only float16 conversion uses it (`keras_to_tflite`). Float32 and full-int8 models came out
the same with and without it (int8 top-1 agreement 93.0% vs 93.2% on 2000 images), and the
folded gate runs two small ops (RELU, MINIMUM) where the original runs one (MUL).

The functions take and return plain functional Keras models (the static subnets of
`Supernet.get_subnet`); the `.keras` and SavedModel exports keep the original graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras

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


def gate_producers(model: keras.Model) -> dict[str, str]:
    """{producer layer name: gate layer name} for every `Activation("hard_sigmoid")` fed
    only by a linear conv / dense layer with a bias that feeds nothing else."""
    if not _is_functional(model):
        return {}
    entries = model.get_config()["layers"]
    inbound = {e["name"]: [n for node in e.get("inbound_nodes", []) for n in inbound_layer_names(node["args"])]
               for e in entries}
    consumers = Counter(n for names in inbound.values() for n in names)
    producers = {}
    for layer in model.layers:
        if not (isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "hard_sigmoid"):
            continue
        sources = inbound.get(layer.name, [])
        if len(sources) != 1 or consumers[sources[0]] != 1:
            continue
        source = model.get_layer(sources[0])
        if (isinstance(source, _LINEAR_WITH_BIAS) and source.use_bias
                and source.get_config().get("activation", "linear") == "linear"):
            producers[source.name] = layer.name
    return producers


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


__all__ = ["fold_gate_scales", "gate_producers", "inbound_layer_names"]
