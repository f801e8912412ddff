"""Once-for-all training: model, samplers, ε schedule, distillation, methods as phases."""

from ofa_tf.training.bn_recalibration import recalibrate_bn
from ofa_tf.training.channel_sorting import sort_mid_channels
from ofa_tf.training.controller import PhaseController
from ofa_tf.training.distillation import distillation_loss, label_loss
from ofa_tf.training.epsilon import EpsilonSchedule
from ofa_tf.training.lr_schedule import LR_SCHEDULES, PhaseCosineSchedule
from ofa_tf.training.methods import PRESETS, Method, Phase, build_method
from ofa_tf.training.model import OnceForAllModel
from ofa_tf.training.samplers import (FullOnlySampler, RestrictedSampler, Sampler, SandwichSampler, UniformSampler,
                                      UpperAttentiveSampler, step_rng)

__all__ = ["EpsilonSchedule", "FullOnlySampler", "LR_SCHEDULES", "Method", "OnceForAllModel", "PRESETS", "Phase",
           "PhaseController", "PhaseCosineSchedule", "RestrictedSampler", "Sampler", "SandwichSampler",
           "UniformSampler", "UpperAttentiveSampler", "build_method", "distillation_loss", "label_loss",
           "recalibrate_bn", "sort_mid_channels", "step_rng"]
