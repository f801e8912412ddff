"""Gradient lists of a train step, one tensor per variable and never None.

A step sums the full model's and every subnet's gradients variable by variable. Its loop
over networks starts from zeros (`OnceForAllModel.train_step`), and the semi-supervised max
net runs under `tf.cond` (phases without it skip it), whose two branches must return the same
structure: its gradients hold zeros where the loss does not reach a variable, and the skipped
branch returns zeros for every variable (`semi_supervised.full_model_part`).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def zero_gradients(variables: Sequence[tf.Variable]) -> list[tf.Tensor]:
    """Zeros shaped like each variable: the gradients of a branch that does not train."""
    return [tf.zeros(v.shape, v.dtype) for v in variables]


def gradients(tape: tf.GradientTape, loss: tf.Tensor, variables: Sequence[tf.Variable]) -> list[tf.Tensor]:
    """`tape.gradient(loss, variables)` with zeros where the loss does not reach a variable."""
    grads = tape.gradient(loss, variables)
    return [tf.zeros(v.shape, v.dtype) if g is None else g for v, g in zip(variables, grads)]
