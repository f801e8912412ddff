"""Training runs: the run config, the run directory as a typed object, checkpoints,
pretrained starts (`init_checkpoint`), the per-epoch report and the training entry.

Names load on first use (`ofa_tf.lazy`): `RunConfig` comes without TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.runs.checkpoints": ("RunCheckpoint", "random_state_variables", "restore_checkpoint"),
    "ofa_tf.runs.config": ("RESUMABLE_CHANGES", "RunConfig"),
    "ofa_tf.runs.directory": ("CHECKPOINT_DIR", "CONFIG_FILE", "METRICS_FILE", "EvaluationData", "RunDirectory",
                              "SavedRun"),
    "ofa_tf.runs.init_checkpoint": ("InitCheckpoint", "check_init_checkpoint", "load_init_checkpoint",
                                    "validation_leak"),
    "ofa_tf.runs.model": ("build_model",),
    "ofa_tf.runs.report": ("EpochReport",),
    "ofa_tf.runs.train": ("PreparedRun", "check_semi_supervised_method", "train", "weights_fingerprint"),
})
