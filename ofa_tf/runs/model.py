"""The model a run trains, built the same way for a new run, a resumed one and a loaded one."""

from __future__ import annotations

from ofa_tf.runs.config import RunConfig
from ofa_tf.spaces import SearchSpace
from ofa_tf.training import Method, OnceForAllModel


def build_model(config: RunConfig, space: SearchSpace, num_classes: int, method: Method) -> OnceForAllModel:
    """The built `OnceForAllModel` of `config` (its frozen teacher only if a phase uses one)."""
    model = OnceForAllModel(
        space, num_classes=num_classes, dropout=config.dropout, kernel_mode=config.kernel_mode,
        max_subnets=method.max_subnets, kd_temperature=config.kd_temperature,
        label_smoothing=config.label_smoothing, frozen_teacher=any(p.teacher == "frozen" for p in method.phases),
        fixmatch_threshold=config.fixmatch_threshold, unlabelled_weight=config.unlabelled_weight,
        subnet_dropout=method.subnet_dropout)
    model.build()
    return model
