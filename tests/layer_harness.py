"""One check every elastic layer and block must pass (like Keras' `run_layer_test`):

- `from_config(get_config())` round-trips and the copy builds the same weights;
- for every choice, the static twin (`to_static`) gives the elastic output, eagerly with
  Python choices and in a `tf.function` with tensor choices (one trace for all);
- gradients through the elastic layer are finite and reach its weights.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from helpers import randomize_weights


def run_elastic_layer_test(make_layer: Callable[[], Any], max_input_shape: Sequence[int],
                           choices: Sequence[dict[str, Any]], atol: float = 1e-5,
                           training_modes: Sequence[bool] = (False,)) -> None:
    layer = make_layer()
    layer.build((None,) + tuple(max_input_shape))
    randomize_weights(layer, seed=1)

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build((None,) + tuple(max_input_shape))
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in layer.weights]

    traced = {}

    def graph_call(x, tensor_choice, training):
        key = (tuple(x.shape), training, tuple(sorted(tensor_choice)))
        if key not in traced:
            traced[key] = tf.function(lambda x, c: layer(x, training=training, **c) if _takes_training(layer)
                                      else layer(x, **c), autograph=False)
        return traced[key](x, tensor_choice)

    rng = np.random.default_rng(0)
    for choice in choices:
        choice = dict(choice)
        in_channels = choice.pop("in_channels", max_input_shape[-1])
        shape = (2,) + tuple(max_input_shape[:-1]) + (in_channels,)
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        for training in training_modes:
            kwargs = {"training": training} if _takes_training(layer) else {}
            elastic = layer(x, **choice, **kwargs).numpy()
            static = layer.to_static((None,) + shape[1:], **choice)
            expected = static(x, training=training).numpy()
            assert elastic.shape == expected.shape, (choice, elastic.shape, expected.shape)
            np.testing.assert_allclose(elastic, expected, atol=atol, err_msg=str(choice))
            tensor_choice = {k: tf.constant(v, tf.int32) for k, v in choice.items()}
            np.testing.assert_allclose(graph_call(x, tensor_choice, training).numpy(), expected, atol=atol,
                                       err_msg=f"traced {choice}")
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x, **choice)))
        grads = tape.gradient(loss, layer.trainable_variables)
        used = [g for g in grads if g is not None]
        assert used, f"no gradient reached {layer.name}"
        assert all(np.isfinite(g.numpy()).all() for g in used)
    for fn in traced.values():
        assert fn.experimental_get_tracing_count() == 1, "a tensor choice must not retrace"


def _takes_training(layer) -> bool:
    import inspect
    return "training" in inspect.signature(layer.call).parameters
