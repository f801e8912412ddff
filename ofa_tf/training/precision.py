"""Mixed precision: which Keras dtype policy a run trains under, and where float32 stays.

`--mixed_precision=bfloat16|float16` trains under Keras's `mixed_bfloat16` / `mixed_float16`
policy: the elastic layers compute in the 16-bit type while their weights stay float32
(Keras casts a variable where a layer reads it, so slicing the active part of a max-size
weight is unchanged), and these stay float32 on purpose:
  - batch-norm statistics and normalisation (`ElasticBatchNormalization` upcasts its input),
  - the logits, and so every loss, distillation target and ε-weighted gradient sum,
  - checkpoints (the weights are float32 variables), BN recalibration, evaluation and
    export: the policy is in force only while the run's model is built (`precision_policy`),
    so the subnets extracted later for them are float32 Keras models.
float16 also needs loss scaling: its narrow exponent flushes small gradients to zero, so
the run's optimizer is wrapped in `keras.optimizers.LossScaleOptimizer` (dynamic scale)
and the train step scales each loss before its gradients (`optimizer.scale_loss`). bfloat16
has float32's exponent and needs none.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras

from ofa_tf.choices import PRECISIONS, check_precision  # noqa: F401 (re-exported)

_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def needs_loss_scaling(precision: str) -> bool:
    return precision == "float16"


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Within the block Keras layers are created under `precision`'s dtype policy (the
    global policy is restored afterwards)."""
    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)

