"""Flags of a once-for-all training run: method, schedule, optimiser, run directory."""

from __future__ import annotations

from absl import flags


def define_train_flags() -> None:
    if "method" in flags.FLAGS:
        return
    from ofa_tf.run import STRATEGIES
    from ofa_tf.training import PRESETS

    flags.DEFINE_string("method", "deps", f"Training method preset: one of {sorted(PRESETS)}.")
    flags.DEFINE_string("model_dir", None, "Run directory (config, checkpoints, TensorBoard logs, metrics.csv). "
                        "Re-running with the same flags resumes.")
    flags.DEFINE_integer("epochs", 4, "Training epochs.")
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the training split).")
    flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and subnet sampling.")
    flags.DEFINE_string("strategy", "default", f"tf.distribute strategy: one of {list(STRATEGIES)}.")
    # optimiser (papers/000 §5.1: SGD Nesterov 0.9, cosine, wd 3e-5, label smoothing 0.1)
    flags.DEFINE_float("learning_rate", 0.05, "Peak learning rate of the cosine schedule.")
    flags.DEFINE_float("lr_warmup_epochs", 0.0, "Linear LR warmup at the start of the run, in epochs.")
    flags.DEFINE_float("momentum", 0.9, "SGD Nesterov momentum.")
    flags.DEFINE_float("weight_decay", 3e-5, "Decoupled weight decay (not on BN or biases).")
    flags.DEFINE_float("grad_clip", None, "Global gradient-norm clip (default: the method's; BigNAS 1.0).")
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the label losses.")
    flags.DEFINE_float("dropout", 0.1, "Dropout before the classifier.")
    # method knobs (None: the method's paper default)
    flags.DEFINE_float("warmup_fraction", None, "P_fm: share of the run that trains the full model only "
                       "(DεpS 0.5, fOFA 5/185, OFA/CompOFA the teacher's share).")
    flags.DEFINE_float("epsilon_start", 1e-4, "ε at the first shrinking step, in (0, 1].")
    flags.DEFINE_float("epsilon_ramp_epochs", None, "Epochs over which ε rises to 1 (DεpS default 5).")
    flags.DEFINE_string("epsilon_mode", "linear", "linear (the paper) or lr_ratio (the public DεpS code).")
    flags.DEFINE_integer("num_subnets", None, "Subnets per step besides the full model (method default).")
    flags.DEFINE_float("kd_temperature", 1.0, "Distillation temperature T (losses are T^2-scaled).")
    flags.DEFINE_string("kernel_mode", "center_crop", "center_crop or transform (OFA's learned kernel transform).")
    flags.DEFINE_integer("bn_calibration_images", 2000, "Images used to recalibrate BN before evaluating a subnet.")
