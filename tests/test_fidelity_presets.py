"""Each `--method` preset's resolved settings against docs/methods.md's table (its copy is
`method_presets.EXPECTED`), and how a run turns them into its learning-rate schedule and
optimizer.

The table these tests pin is docs/methods.md: a changed default fails here first.
"""

import os

import numpy as np
import pytest

from method_presets import EXPECTED
from ofa_tf import OfaError
from ofa_tf.spaces import get_space
from ofa_tf.training import PhaseCosineSchedule, build_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_optimizer_settings_match_the_table(name):
    expected = dict(EXPECTED[name])
    method = build_method(name, get_space(expected.pop("space")))
    phases = expected.pop("phases")
    assert {k: getattr(method, k) for k in expected} == pytest.approx(expected)
    assert [p.name for p in method.phases] == [p[0] for p in phases]
    for phase, (_, fraction, lr_scale, lr_warmup) in zip(method.phases, phases):
        assert (phase.fraction, phase.lr_scale, phase.lr_warmup) == pytest.approx((fraction, lr_scale, lr_warmup))


@pytest.mark.unit
def test_every_preset_is_in_the_table_and_the_doc():
    from ofa_tf.training import PRESETS
    assert set(EXPECTED) == set(PRESETS)
    with open(os.path.join(ROOT, "docs", "methods.md"), encoding="utf-8") as f:
        doc = f.read()
    for name in PRESETS:
        assert f"## `{name}`" in doc, name


@pytest.mark.unit
def test_peak_learning_rate_scales_with_the_global_batch():
    assert build_method("deps").peak_learning_rate(256) == pytest.approx(0.325)
    assert build_method("deps").peak_learning_rate(64) == pytest.approx(0.08125)
    assert build_method("bignas").peak_learning_rate(2048) == pytest.approx(0.8)
    assert build_method("tofa").peak_learning_rate(32) == pytest.approx(0.01)  # TOFA's 0.01 at batch 32


@pytest.mark.unit
def test_run_config_resolves_the_method_defaults_and_overrides():
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.runs.plan import RunPlan
    method = RunPlan.resolve(RunConfig(method="bignas")).method
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay) == ("value", 1.0, 1e-5)
    config = RunConfig(method="bignas", grad_clip_mode="norm", weight_decay=3e-5, weight_decay_form="decoupled",
                       lr_schedule="phase")
    method = RunPlan.resolve(config).method
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay, method.weight_decay_form,
            method.lr_schedule) == ("norm", 1.0, 3e-5, "decoupled", "phase")
    assert build_method("deps", grad_clip=2.0).grad_clip_mode == "norm"  # a threshold alone: by norm
    assert build_method("bignas", grad_clip_mode="none").grad_clip is None
    with pytest.raises(OfaError, match="grad_clip_mode=value: needs grad_clip"):
        build_method("deps", grad_clip_mode="value")


@pytest.mark.unit
def test_a_method_saved_before_optimizer_settings_reads_as_it_trained():
    from ofa_tf.training.methods import Method
    saved = build_method("bignas").to_config()
    for key in ("grad_clip", "grad_clip_mode", "lr_per_256", "lr_schedule", "weight_decay", "weight_decay_form",
                "restart_optimizer"):
        saved.pop(key)
    saved["clipnorm"] = 1.0
    method = Method.from_config(saved)
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay_form) == ("norm", 1.0, "decoupled")
    assert Method.from_config(build_method("ofa").to_config()) == build_method("ofa")


@pytest.mark.unit
def test_phase_warmups_ramp_from_zero_then_follow_each_phase_cosine():
    schedule = PhaseCosineSchedule(1.0, [0, 40, 60], 100, [1.0, 0.1, 0.5], mode="phase", phase_warmups=[0, 0, 10])
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == pytest.approx(1.0) and lr(39) < 0.01  # first phase: no warm-up, a full cosine
    assert lr(40) == pytest.approx(0.1)  # no warm-up: the phase restarts at its peak
    assert [lr(s) for s in (60, 65, 70)] == pytest.approx([0.0, 0.25, 0.5])  # linear from 0 ...
    assert lr(85) == pytest.approx(0.5 * 0.5 * (1 + np.cos(np.pi * 15 / 30)))  # ... then its cosine over 30 steps
    run = PhaseCosineSchedule(1.0, [0], 100, mode="run", phase_warmups=[10])
    assert [float(run(s)) for s in (0, 5)] == pytest.approx([0.0, 0.5 * 0.5 * (1 + np.cos(np.pi * 0.05))])
    assert float(run(50)) == pytest.approx(0.5)  # the run's cosine, unshifted (AttentiveNAS's shape)
    assert schedule.get_config()["phase_warmups"] == [0, 0, 10]
    with pytest.raises(OfaError, match="shorter than each phase"):
        PhaseCosineSchedule(1.0, [0, 40], 100, mode="phase", phase_warmups=[40, 0])


@pytest.mark.unit
def test_a_run_builds_the_presets_schedule_and_optimizer():
    """What `ofa-train` builds from a RunConfig: the rate per 256 images at the run's batch,
    the phase cosine with OFA's warm-ups, a momentum restart at each phase start."""
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.runs.plan import RunPlan
    plan = RunPlan.resolve(RunConfig(method="ofa", epochs=121, batch_size=256))  # 605 steps: one per reference epoch
    schedule = plan.learning_rate_schedule(steps_per_epoch=5)
    optimizer = plan.optimizer(schedule, steps_per_epoch=5)
    assert schedule.learning_rate == pytest.approx(0.325) and schedule.mode == "phase"
    assert schedule.phase_starts == [0, 180, 305, 330, 455, 480]
    assert schedule.phase_warmups == [0, 5, 0, 5, 0, 5]
    assert optimizer.restart_steps == [180, 305, 330, 455, 480]
    assert (optimizer.weight_decay_form, optimizer.reference_weight_decay, optimizer.clip_mode) == (
        "coupled", 3e-5, "none")
    # OFA's warm-up: from one GPU's rate (64 of the 256 images: a quarter) to the phase's peak at its 5th step
    kernel_peak = 0.325 * 0.96 / 2.6
    assert [float(schedule(s)) for s in (180, 184, 185)] == pytest.approx(
        [kernel_peak * (0.25 + 0.75 / 5), kernel_peak, kernel_peak])

    plan = RunPlan.resolve(RunConfig(method="bignas", epochs=10, batch_size=64, learning_rate=0.5,
                                     lr_warmup_epochs=2, weight_decay_form="decoupled"))
    schedule = plan.learning_rate_schedule(steps_per_epoch=5)
    optimizer = plan.optimizer(schedule, steps_per_epoch=5)
    assert (schedule.learning_rate, schedule.warmup_steps, schedule.phase_warmups) == (0.5, 10, [0])
    assert (optimizer.restart_steps, optimizer.clip_mode, optimizer.clip) == ([], "value", 1.0)
    assert optimizer.weight_decay == pytest.approx(1e-5)  # decoupled: Keras's own decay
