"""Subnet search: cost models, the accuracy predictor, searchers and measured accuracy.

TensorFlow is only imported by `measure`, so searching with a saved predictor and the
cost models stays fast to start.
"""

from ofa_tf.search.costs import ArchCostTable, Constraint, CostModels, LatencyCost, MacsCost, ParamsCost
from ofa_tf.search.encoding import ArchEncoder
from ofa_tf.search.predictor import AccuracyPredictor, fit_predictor
from ofa_tf.search.searchers import EvolutionSearch, ExhaustiveSearch, RandomSearch, SearchResult, zero_cost_select

__all__ = ["AccuracyPredictor", "ArchCostTable", "ArchEncoder", "Constraint", "CostModels", "EvolutionSearch",
           "ExhaustiveSearch", "LatencyCost", "MacsCost", "ParamsCost", "RandomSearch", "SearchResult", "fit_predictor",
           "zero_cost_select"]
