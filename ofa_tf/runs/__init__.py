"""Training runs: the run config, the run directory as a typed object, checkpoints,
pretrained starts (`init_checkpoint`), the per-epoch report and the training entry."""

from ofa_tf.runs.checkpoints import RunCheckpoint, random_state_variables, restore_checkpoint
from ofa_tf.runs.config import RESUMABLE_CHANGES, RunConfig
from ofa_tf.runs.directory import (CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, EvaluationData, RunDirectory,
                                   SavedRun)
from ofa_tf.runs.init_checkpoint import InitCheckpoint, check_init_checkpoint, load_init_checkpoint, validation_leak
from ofa_tf.runs.model import build_model
from ofa_tf.runs.report import EpochReport
from ofa_tf.runs.train import PreparedRun, check_semi_supervised_method, train, weights_fingerprint

__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "EpochReport", "EvaluationData", "InitCheckpoint", "METRICS_FILE",
           "PreparedRun", "RESUMABLE_CHANGES", "RunCheckpoint", "RunConfig", "RunDirectory", "SavedRun",
           "build_model", "check_init_checkpoint", "check_semi_supervised_method", "load_init_checkpoint",
           "random_state_variables", "restore_checkpoint", "train", "validation_leak", "weights_fingerprint"]
