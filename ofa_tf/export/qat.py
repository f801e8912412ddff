"""Quantisation-aware training of an extracted subnet, then int8 conversion.

tensorflow-model-optimization 0.8.1 rejects Keras 3 models, so the static subnet (plain
Keras 3 layers, `Supernet.get_subnet`) is rebuilt layer by layer in tf_keras with the
same weights (matches to ~1e-6), annotated for QAT, fine-tuned for a few
epochs and converted. tfmot has no quantize config for hard-swish / hard-sigmoid
activations or `Multiply` (squeeze-excite), so they become small tf_keras layers with an
output-only quantize config; the converter then emits TFLite's HARD_SWISH op.

Each BN is folded into the conv before it first (`quantize_model`), so QAT fake-quantises
the kernels the converter writes: folded, the fine-tuned int8 model was more accurate than
unfolded, which fell below post-training int8 (docs/results.md).

Importing tfmot sets TF_USE_LEGACY_KERAS=1 for the process (after which `tf.keras` is
tf_keras), so this module imports it lazily and the project never uses `tf.keras`.
"""

from __future__ import annotations

from typing import Any, Iterable

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.export.calibration import check_int8_model
from ofa_tf.export.graph import batch_norm_producers, folded_batch_norm_weights, inbound_layer_names
from ofa_tf.export.tflite import quiet_conversion
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.training.distillation import distillation_loss, label_loss

_SIMPLE = ("Conv2D", "DepthwiseConv2D", "BatchNormalization", "GlobalAveragePooling2D", "Add", "Multiply",
           "Flatten", "Dropout", "Dense")


def _tfk():
    import tf_keras
    return tf_keras


def _custom_layers() -> dict[str, type]:
    """tf_keras HardSwish / HardSigmoid (Keras 3's definitions: relu6(x + 3) / 6)."""
    if _CUSTOM:
        return _CUSTOM
    tfk = _tfk()

    class HardSigmoid(tfk.layers.Layer):
        def call(self, x):
            return tf.nn.relu6(x + 3.0) / 6.0

    class HardSwish(tfk.layers.Layer):
        def call(self, x):
            return x * tf.nn.relu6(x + 3.0) / 6.0

    _CUSTOM.update(HardSigmoid=HardSigmoid, HardSwish=HardSwish)
    return _CUSTOM


_CUSTOM: dict[str, type] = {}


def _tf_keras_layer(layer: keras.layers.Layer, use_bias: bool | None = None):
    tfk = _tfk()
    name, kind = layer.name, type(layer).__name__
    config = layer.get_config()
    if use_bias is not None:
        config["use_bias"] = use_bias
    if kind == "Activation":
        activation = config["activation"]
        custom = {"hard_swish": "HardSwish", "hard_silu": "HardSwish", "hard_sigmoid": "HardSigmoid"}.get(activation)
        if custom:
            return _custom_layers()[custom](name=name)
        if activation not in ("relu", "relu6", "linear"):
            raise OfaError(f"QAT: activation {activation!r} of layer {name} has no quantize config")
        return tfk.layers.Activation(activation, name=name)
    if kind not in _SIMPLE:
        raise OfaError(f"QAT: layer {name} ({kind}) has no tf_keras counterpart here")
    keep = {"Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias"),
            "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate", "use_bias"),
            "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
            "GlobalAveragePooling2D": ("keepdims",), "Dropout": ("rate",), "Dense": ("units", "use_bias")}
    return getattr(tfk.layers, kind)(name=name, **{k: config[k] for k in keep.get(kind, ())})


def to_tf_keras(model: keras.Model, fold_batch_norm: bool = False):
    """The static Keras 3 functional `model` rebuilt in tf_keras, weights copied.

    With `fold_batch_norm`, each BN that follows a conv / dense layer is folded into it (the
    layer gains a bias; `graph.folded_batch_norm_weights`), as the TFLite converter does.
    """
    tfk = _tfk()
    folds = batch_norm_producers(model) if fold_batch_norm else {}
    folded_away = {bn: producer for producer, bn in folds.items()}
    tensors: dict[str, Any] = {}
    for entry in model.get_config()["layers"]:
        layer = model.get_layer(entry["name"])
        if entry["class_name"] == "InputLayer":
            tensors[layer.name] = tfk.Input(tuple(layer.output.shape[1:]), name=layer.name)
            continue
        if layer.name in folded_away:
            tensors[layer.name] = tensors[folded_away[layer.name]]
            continue
        inbound = [tensors[n] for n in inbound_layer_names(entry["inbound_nodes"][0]["args"])]
        new = _tf_keras_layer(layer, use_bias=True if layer.name in folds else None)
        tensors[layer.name] = new(inbound if len(inbound) > 1 else inbound[0])
        if layer.name in folds:
            new.set_weights(folded_batch_norm_weights(layer, model.get_layer(folds[layer.name])))
        else:
            new.set_weights(layer.get_weights())
    output_name = model.outputs[0]._keras_history[0].name
    input_name = model.inputs[0]._keras_history[0].name
    return tfk.Model(tensors[input_name], tensors[output_name], name=model.name)


def _output_only_config():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Quantises a layer's output only (no weights): hard-swish, hard-sigmoid, Multiply."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def quantize_model(model: keras.Model, fold_batch_norm: bool = True):
    """A QAT (fake-quantised) tf_keras copy of the static Keras 3 `model`.

    `fold_batch_norm` (default) folds each BN into the conv before it first, so fine-tuning
    trains, and fake-quantises, the very kernels and biases the converter writes as int8.
    Unfolded, tfmot quantises the raw kernel while the converter quantises kernel x BN scale,
    and BN keeps updating its statistics on the augmented fine-tuning batches.
    """
    import tensorflow_model_optimization as tfmot

    tfk = _tfk()
    qk = tfmot.quantization.keras
    output_only = _output_only_config()
    custom = tuple(_custom_layers().values()) + (tfk.layers.Multiply,)
    source = to_tf_keras(model, fold_batch_norm)

    def annotate(layer):
        if isinstance(layer, custom):
            return qk.quantize_annotate_layer(layer, output_only())
        if isinstance(layer, tfk.layers.InputLayer):
            return layer
        return qk.quantize_annotate_layer(layer)

    annotated = tfk.models.clone_model(source, clone_function=annotate)
    annotated.set_weights(source.get_weights())
    with qk.quantize_scope({"OutputQuantizeConfig": output_only, **_custom_layers()}):
        return qk.quantize_apply(annotated)


def _distiller(student, teacher, distillation: float):
    """A tf_keras model that trains `student` on `distillation` x soft cross-entropy from the
    frozen `teacher`'s logits + (1 - `distillation`) x label cross-entropy, and reports both
    and the top-1 agreement with the teacher."""
    tfk = _tfk()

    class Distiller(tfk.Model):
        def __init__(self):
            super().__init__()
            self.student, self.teacher = student, teacher
            self.trackers = {name: tfk.metrics.Mean(name) for name in
                             ("loss", "distillation_loss", "label_loss", "agreement", "accuracy")}

        @property
        def metrics(self):
            return list(self.trackers.values())

        def call(self, images, training=False):
            return self.student(images, training=training)

        def train_step(self, data):
            images, labels = data
            teacher_logits = self.teacher(images, training=False)
            with tf.GradientTape() as tape:
                logits = self.student(images, training=True)
                soft = distillation_loss(logits, teacher_logits)
                hard = label_loss(labels, logits)
                loss = distillation * soft + (1.0 - distillation) * hard
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            predicted = tf.argmax(logits, -1)
            values = {"loss": loss, "distillation_loss": soft, "label_loss": hard,
                      "agreement": tf.reduce_mean(tf.cast(predicted == tf.argmax(teacher_logits, -1), tf.float32)),
                      "accuracy": tf.reduce_mean(tf.cast(predicted == tf.cast(labels, tf.int64), tf.float32))}
            for name, value in values.items():
                self.trackers[name].update_state(value)
            return {name: tracker.result() for name, tracker in self.trackers.items()}

    return Distiller()


def check_fine_tuning(epochs: int, steps_per_epoch: int | None, learning_rate: float, distillation: float) -> None:
    """One-line errors for QAT fine-tuning settings (`fine_tune`; the exporter calls it before
    loading anything, when `steps_per_epoch` may still be None: one pass)."""
    if epochs < 0:
        raise OfaError(f"qat_epochs={epochs}: expected >= 0")
    if steps_per_epoch is not None and steps_per_epoch <= 0:
        raise OfaError(f"qat_steps_per_epoch={steps_per_epoch}: expected a positive number")
    if not learning_rate > 0:
        raise OfaError(f"qat_learning_rate={learning_rate}: expected a positive number")
    if not 0.0 <= distillation <= 1.0:
        raise OfaError(f"qat_distillation={distillation}: expected a weight in [0, 1]")


def fine_tune(qat_model, batches: tf.data.Dataset, epochs: int, steps_per_epoch: int,
              learning_rate: float = 1e-3, verbose: int = 1, teacher: keras.Model | None = None,
              distillation: float = 0.0) -> dict[str, float]:
    """A few epochs of SGD (momentum 0.9, cosine decay) on (images, labels) batches.

    With a `teacher` (the float subnet the int8 model stands in for), the history also has
    the top-1 agreement with it, and the loss is `distillation` x soft cross-entropy from
    the teacher's logits + (1 - `distillation`) x label cross-entropy. Distillation raised
    the int8 model's agreement with the float one but lowered its accuracy (docs/results.md),
    hence labels only by default.
    """
    tfk = _tfk()
    check_fine_tuning(epochs, steps_per_epoch, learning_rate, distillation)
    if epochs == 0:
        return {}
    schedule = tfk.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch)
    optimizer = tfk.optimizers.SGD(schedule, momentum=0.9)
    if teacher is None:
        trainer = qat_model
        trainer.compile(optimizer=optimizer, loss=tfk.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
    else:
        frozen = to_tf_keras(teacher, fold_batch_norm=True)
        frozen.trainable = False
        trainer = _distiller(qat_model, frozen, distillation)
        trainer.compile(optimizer=optimizer)
    stop_between_steps = tfk.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: raise_if_interrupted())
    history = trainer.fit(batches, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
                          callbacks=[stop_between_steps])  # a Ctrl-C stops fine-tuning after the current step
    return {k: float(v[-1]) for k, v in history.history.items()}


def qat_to_tflite(qat_model) -> bytes:
    """int8 `.tflite` bytes of a fine-tuned QAT model (float32 input and output), checked to
    run as post-training int8 is (`check_int8_model`): the ranges QAT learned come from the
    same recalibrated BN statistics, so they can be as degenerate."""
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with quiet_conversion():
        converted = converter.convert()
    raise_if_interrupted()  # a signal during conversion (not unwound from inside it)
    check_int8_model(converted, mode="qat")
    return converted


def max_rebuild_error(model: keras.Model, images: Iterable[np.ndarray]) -> float:
    """Max |logit difference| between `model` and its tf_keras rebuild (a sanity check)."""
    rebuilt = to_tf_keras(model)
    worst = 0.0
    for batch in images:
        worst = max(worst, float(np.abs(np.asarray(model(batch, training=False))
                                        - rebuilt(batch, training=False).numpy()).max()))
    return worst
