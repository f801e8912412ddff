"""Losses of a once-for-all step: label loss for the full model, distillation for subnets."""

from __future__ import annotations

import tensorflow as tf


def label_loss(labels: tf.Tensor, logits: tf.Tensor, label_smoothing: float = 0.0) -> tf.Tensor:
    """Mean cross-entropy with optional label smoothing (integer labels)."""
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=logits.dtype)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes, logits.dtype)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits))


def distillation_loss(student_logits: tf.Tensor, teacher_logits: tf.Tensor, temperature: float = 1.0,
                      scale_by_t2: bool = True) -> tf.Tensor:
    """Soft cross-entropy from the teacher's softened output (Hinton et al.), T^2-scaled.

    The teacher's logits are detached here, so distillation never sends gradient into
    the teacher, also when the teacher is the full model of the same supernet (in-place
    KD, DεpS paper §4.3). T^2 keeps the gradient scale independent of T.
    """
    teacher = tf.nn.softmax(tf.stop_gradient(teacher_logits) / temperature)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(teacher, student_logits / temperature))
    return loss * (temperature * temperature) if scale_by_t2 else loss
