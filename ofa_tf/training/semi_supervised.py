"""TOFA's semi-supervised loss (Transfer-Once-For-All, arXiv:2303.15485, §3.2, Algorithm 1): FixMatch for the max net,
in-place distillation on labelled and unlabelled images for the subnets.

A semi-supervised batch is `({LABELLED: x_l, WEAK: w[x_u], STRONG: s[x_u]}, y_l)`: the
labelled images (weakly augmented), and two views of the same unlabelled images, weak
(flip + pad-crop) and strong (+ RandAugment + Cutout, `ofa_tf.data.augment`). One step:

  max net:  CE_ls(θ_max(x_l), y_l) + λ_u · FixMatch
            FixMatch = 1/B_u Σ_u δ_u · CE_ls(θ_max(s[x_u]), ŷ_u),
            ŷ_u = argmax θ_max(w[x_u]),  δ_u = [max softmax θ_max(w[x_u]) ≥ threshold]
  subnets:  KD(θ_A([x_l; w[x_u]]), detached θ_max([x_l; w[x_u]])), scaled by ε as in the
            supervised step (every labelled and unlabelled image weighs the same, as the
            paper's sums over B_l and B_u do).

CE_ls is cross-entropy against label-smoothed targets (the paper smooths the pseudo-labels
too). Pseudo-labels and the mask come from detached logits, so the weak view sends no
gradient; the max net sees all three parts in one forward pass (BN batch statistics over
the whole batch, as FixMatch does). λ_u and the threshold are fixed per run, so they are
Python floats baked into the trace; everything per step stays in the model's variables.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ofa_tf.data.semi_supervised import BATCH_KEYS, LABELLED, STRONG, WEAK
from ofa_tf.training.distillation import label_loss
from ofa_tf.training.gradients import gradients, zero_gradients

LOG_NAMES = ("loss_fixmatch", "pseudo_label_rate")


def is_semi_supervised_batch(x) -> bool:
    """True for the dict batches `semi_supervised_pipeline` makes (checked while tracing)."""
    return isinstance(x, dict) and set(x) == set(BATCH_KEYS)


def pseudo_labels(weak_logits: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(argmax labels int32, float mask: 1 where the max probability is >= threshold), no gradient."""
    probabilities = tf.nn.softmax(tf.stop_gradient(weak_logits))
    labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    mask = tf.cast(tf.reduce_max(probabilities, axis=-1) >= threshold, weak_logits.dtype)
    return labels, mask


def fixmatch_loss(strong_logits: tf.Tensor, weak_logits: tf.Tensor, threshold: float,
                  label_smoothing: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
    """(FixMatch loss, mask): masked cross-entropy of the strong view against the weak
    view's label-smoothed pseudo-labels, averaged over *all* unlabelled images (FixMatch's
    normalisation: unconfident images count as zero, so the loss grows as confidence does)."""
    labels, mask = pseudo_labels(weak_logits, threshold)
    num_classes = tf.shape(strong_logits)[-1]
    targets = tf.one_hot(labels, num_classes, dtype=strong_logits.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes, strong_logits.dtype)
    per_image = tf.nn.softmax_cross_entropy_with_logits(targets, strong_logits)
    count = tf.maximum(tf.cast(tf.shape(strong_logits)[0], strong_logits.dtype), 1.0)
    return tf.reduce_sum(per_image * mask) / count, mask


def max_net_loss(model: keras.Model, x: dict, y: tf.Tensor):
    """The max net's semi-supervised loss from one training-mode forward pass over
    [labelled; weak; strong]. Returns (loss, FixMatch loss, mask, labelled logits, weak logits).

    `model` is the `OnceForAllModel` being trained (its FixMatch threshold, λ_u and label
    smoothing apply)."""
    x_l, x_w, x_s = x[LABELLED], x[WEAK], x[STRONG]
    n_l, n_u = tf.shape(x_l)[0], tf.shape(x_w)[0]
    logits = model(tf.concat([x_l, x_w, x_s], axis=0), training=True)  # the max net (no arch: no slicing)
    logits_l, logits_w, logits_s = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
    unlabelled, mask = fixmatch_loss(logits_s, logits_w, model.fixmatch_threshold, model.label_smoothing)
    loss = label_loss(y, logits_l, model.label_smoothing) + model.unlabelled_weight * unlabelled
    return loss, unlabelled, mask, logits_l, logits_w


def full_model_part(model: keras.Model, x: dict, y: tf.Tensor, variables: list):
    """The max net's share of a semi-supervised `train_step` of `model`, an `OnceForAllModel`.

    Returns (loss, labelled logits, gradients, subnet inputs [x_l; w[x_u]], their labels
    [y_l; ŷ_u], the max net's logits on them (the in-place teacher, before detaching),
    extra logs). When the phase does not train the full model, loss and gradients are
    zero and so are the logits (as in the supervised step).
    """
    x_l, x_w = x[LABELLED], x[WEAK]
    num_classes = model.num_classes

    def train():
        with tf.GradientTape() as tape:
            loss, unlabelled, mask, logits_l, logits_w = max_net_loss(model, x, y)
            scaled = model.optimizer.scale_loss(loss)  # float16 loss scaling (else the loss itself)
        return loss, unlabelled, tf.reduce_mean(mask), logits_l, logits_w, gradients(tape, scaled, variables)

    def skip():
        zero = tf.constant(0.0)
        return (zero, zero, zero, tf.zeros((tf.shape(x_l)[0], num_classes)), tf.zeros((tf.shape(x_w)[0], num_classes)),
                zero_gradients(variables))

    loss, unlabelled, rate, logits_l, logits_w, grads = tf.cond(model.train_full > 0, train, skip)
    guessed, _ = pseudo_labels(logits_w, model.fixmatch_threshold)
    subnet_x = tf.concat([x_l, x_w], axis=0)
    subnet_y = tf.concat([tf.cast(y, tf.int32), guessed], axis=0)
    teacher_source = tf.concat([logits_l, logits_w], axis=0)
    return loss, logits_l, grads, subnet_x, subnet_y, teacher_source, {"loss_fixmatch": unlabelled,
                                                                       "pseudo_label_rate": rate}
