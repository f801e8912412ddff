"""Subnet search: cost models, the accuracy predictor, searchers and measured accuracy.

TensorFlow is only imported by `measure`, so searching with a saved predictor and the
cost models stays fast to start.
"""

from ofa_tf.search.costs import (CONSTRAINT_NAMES, ArchCostTable, Constraint, CostModels, LatencyCost,
                                 LatencyPredictor, MacsCost, ParamsCost, format_cost, parse_budget, parse_target,
                                 satisfies, zip_targets)
from ofa_tf.search.encoding import space_fingerprint
from ofa_tf.search.predictor import (PREDICTOR_DIR, PREDICTOR_KINDS, AccuracyPredictor, cross_validated_spearman,
                                     fit_predictor, kendall_tau, spearman)
from ofa_tf.search.searchers import (SEARCHERS, EvolutionSearch, ExhaustiveSearch, RandomSearch, SearchResult,
                                     zero_cost_select)
from ofa_tf.spaces import ArchEncoder

__all__ = ["CONSTRAINT_NAMES", "PREDICTOR_DIR", "PREDICTOR_KINDS", "SEARCHERS", "AccuracyPredictor", "ArchCostTable",
           "ArchEncoder", "Constraint", "CostModels", "EvolutionSearch", "ExhaustiveSearch", "LatencyCost",
           "LatencyPredictor", "MacsCost", "ParamsCost", "RandomSearch", "SearchResult", "cross_validated_spearman",
           "fit_predictor", "format_cost", "kendall_tau", "parse_budget", "parse_target", "satisfies",
           "space_fingerprint", "spearman", "zero_cost_select", "zip_targets"]
