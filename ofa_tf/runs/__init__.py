"""Training runs: the run config, the run directory as a typed object, checkpoints,
pretrained starts (`init_checkpoint`), the per-epoch report and the training entry.

Names load on first use (`ofa_tf.lazy`): `RunConfig` comes without TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.runs.checkpoints": ("RunCheckpoint",),
    "ofa_tf.runs.config": ("RunConfig",),
    "ofa_tf.runs.directory": ("RunDirectory",),
    "ofa_tf.runs.init_checkpoint": ("load_init_checkpoint",),
    "ofa_tf.runs.plan": ("RunPlan",),
    "ofa_tf.runs.report": ("EpochReport",),
    "ofa_tf.runs.train": ("PreparedRun", "train"),
})
