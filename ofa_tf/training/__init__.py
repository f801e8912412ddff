"""Once-for-all training: model, samplers, ε schedule, distillation, methods as phases."""

from ofa_tf.training.channel_sorting import sort_mid_channels
from ofa_tf.training.controller import PhaseController
from ofa_tf.training.epsilon import EpsilonSchedule
from ofa_tf.training.lr_schedule import PhaseCosineSchedule
from ofa_tf.training.methods import PRESETS, Method, Phase, build_method
from ofa_tf.training.ofa_model import OnceForAllModel
from ofa_tf.training.samplers import (FullOnlySampler, RestrictedSampler, Sampler, SandwichSampler, UniformSampler,
                                      UpperAttentiveSampler)

__all__ = ["EpsilonSchedule", "FullOnlySampler", "Method", "OnceForAllModel", "PRESETS", "Phase", "PhaseController",
           "PhaseCosineSchedule", "RestrictedSampler", "Sampler", "SandwichSampler", "UniformSampler",
           "UpperAttentiveSampler", "build_method", "sort_mid_channels"]
