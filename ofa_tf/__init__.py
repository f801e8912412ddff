"""ofa_tf: once-for-all supernet training, search and deployment for Keras 3 / TensorFlow.

The public API (docs/api.md) is the names below, each loaded on first use (`ofa_tf.lazy`), so
`import ofa_tf` loads no TensorFlow; the subpackages hold the rest.
"""

from ofa_tf.errors import OfaError
from ofa_tf.lazy import lazy_exports

__version__ = "0.1.0"

_lazy, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.spaces.space": ("SearchSpace",),
    "ofa_tf.spaces.arch": ("Arch",),
    "ofa_tf.spaces.registry": ("get_space",),
    "ofa_tf.spaces.costs": ("profile",),
    "ofa_tf.models.supernet": ("Supernet",),
    "ofa_tf.training.methods": ("Method", "build_method"),
    "ofa_tf.training.ofa_model": ("OnceForAllModel",),
    "ofa_tf.training.controller": ("PhaseController",),
    "ofa_tf.runs.config": ("RunConfig",),
    "ofa_tf.runs.train": ("train",),
    "ofa_tf.runs.directory": ("RunDirectory",),
    "ofa_tf.evaluation.bn_recalibration": ("recalibrate_bn",),
    "ofa_tf.evaluation.subnet_accuracy": ("evaluate_arch", "evaluate_archs"),
    "ofa_tf.search.searchers": ("EvolutionSearch",),
    "ofa_tf.search.predictor": ("AccuracyPredictor", "fit_predictor"),
    "ofa_tf.export.options": ("ExportOptions",),
    "ofa_tf.export.exporter": ("export_subnet",),
})
__all__ = ["OfaError", "__version__", *_lazy]
