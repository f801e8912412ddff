"""Flags of a once-for-all training run: method, schedule, optimiser, run directory."""

from __future__ import annotations

from absl import flags


def define_train_flags() -> None:
    if "method" in flags.FLAGS:
        return
    from ofa_tf.distribute import STRATEGIES
    from ofa_tf.training import PRESETS

    flags.DEFINE_string("method", "deps", f"Training method preset: one of {sorted(PRESETS)}.")
    flags.DEFINE_string("model_dir", None, "Run directory (config, checkpoints, TensorBoard logs, metrics.csv). "
                        "Re-running with the same flags resumes.")
    flags.DEFINE_integer("epochs", 4, "Training epochs.")
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the training split).")
    flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and subnet sampling.")
    flags.DEFINE_string("strategy", "default", f"tf.distribute strategy: one of {list(STRATEGIES)} "
                        "(multi_worker reads the cluster from TF_CONFIG; see BUILD.md).")
    flags.DEFINE_integer("cpu_devices", None, "With --strategy=mirrored on a machine without GPUs: split the CPU "
                         "into this many logical devices (one replica each).")
    flags.DEFINE_integer("checkpoint_every_steps", None, "Also checkpoint every N global steps (besides every "
                         "epoch), so a killed run loses at most N steps.")
    # optimiser (papers/000 §5.1: SGD Nesterov 0.9, cosine, wd 3e-5, label smoothing 0.1)
    flags.DEFINE_float("learning_rate", 0.05, "Peak learning rate of the cosine schedule.")
    flags.DEFINE_float("lr_warmup_epochs", 0.0, "Linear LR warmup at the start of the run, in epochs.")
    flags.DEFINE_string("lr_schedule", "run", "run: one cosine decay over the whole run (DεpS, BigNAS, fOFA); "
                        "phase: the cosine restarts at every phase start (OFA's scripts). Either way a phase's LR "
                        "scale applies (OFA / CompOFA shrink at 1/12 and 1/4 of the kernel phase's rate).")
    flags.DEFINE_float("momentum", 0.9, "SGD Nesterov momentum.")
    flags.DEFINE_float("weight_decay", 3e-5, "Decoupled weight decay (not on BN or biases).")
    flags.DEFINE_float("grad_clip", None, "Global gradient-norm clip (default: the method's; BigNAS 1.0).")
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the label losses.")
    flags.DEFINE_float("dropout", 0.1, "Dropout before the classifier.")
    # method knobs (None: the method's paper default)
    flags.DEFINE_float("warmup_fraction", None, "P_fm: share of the run that trains the full model only "
                       "(DεpS 0.5, fOFA 5/185, OFA/CompOFA the teacher's share).")
    flags.DEFINE_float("epsilon_start", 1e-4, "ε at the first shrinking step, in (0, 1].")
    flags.DEFINE_float("epsilon_ramp_epochs", None, "Epochs over which ε rises to 1 (default: the paper's "
                       "5 of 270 epochs as a share of --epochs).")
    flags.DEFINE_string("epsilon_mode", "linear", "linear (the paper) or lr_ratio (the public DεpS code).")
    flags.DEFINE_integer("num_subnets", None, "Subnets per step besides the full model (method default).")
    flags.DEFINE_float("kd_temperature", 1.0, "Distillation temperature T (losses are T^2-scaled).")
    flags.DEFINE_string("kernel_mode", "center_crop", "center_crop or transform (OFA's learned kernel transform).")
    flags.DEFINE_integer("bn_calibration_images", 2000, "Images used to recalibrate BN before evaluating a subnet.")
    define_transfer_flags()


def define_transfer_flags() -> None:
    """TOFA (papers/004): few labels, unlabelled data with FixMatch, a pretrained start."""
    if "unlabelled_dataset" in flags.FLAGS:
        return
    flags.DEFINE_integer("labelled_per_class", 0, "Keep only this many labelled images per class of the train "
                         "split (seeded, deterministic); 0 keeps every label.")
    flags.DEFINE_string("unlabelled_dataset", None, "Unlabelled images for semi-supervised training: 'rest' (the "
                        "train images --labelled_per_class leaves out) or a dataset spec like --dataset (its labels "
                        "are ignored). Unset: supervised.")
    flags.DEFINE_integer("unlabelled_ratio", 1, "μ: unlabelled images per labelled image in a batch (TOFA: 1, "
                         "FixMatch: 7; each unit adds 2 x batch_size max-net and batch_size subnet images per step).")
    flags.DEFINE_float("unlabelled_weight", 1.0, "λ_u: weight of the max net's FixMatch loss.")
    flags.DEFINE_float("fixmatch_threshold", 0.95, "FixMatch confidence threshold in (0, 1]: an unlabelled image "
                       "gets a pseudo-label when the max net's top probability on its weak view reaches it.")
    flags.DEFINE_string("init_checkpoint", None, "Start from a pretrained supernet: a run directory or a "
                        ".weights.h5 of the same space, width and class count (ignored when resuming). A run on "
                        "the same dataset should share this run's --seed and --validation_fraction, or its "
                        "training images land in this validation split (a warning says so).")


def transfer_settings() -> dict:
    """The RunConfig fields of `define_transfer_flags`."""
    f = flags.FLAGS
    return dict(labelled_per_class=f.labelled_per_class, unlabelled_dataset=f.unlabelled_dataset,
                unlabelled_ratio=f.unlabelled_ratio, unlabelled_weight=f.unlabelled_weight,
                fixmatch_threshold=f.fixmatch_threshold, init_checkpoint=f.init_checkpoint)
