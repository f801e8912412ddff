"""Each preset's phases, spaces and networks as its reference has them (docs/methods.md):
CompOFA's compound phases, fOFA off its coupled space, DεpS's kernel-7 space."""

import numpy as np
import pytest

from ofa_tf.spaces import get_space
from ofa_tf.training import build_method


@pytest.mark.unit
def test_compofa_trains_all_243_networks_in_both_compound_phases():
    """CompOFA's compound phases both sample the whole coupled space (its train_ofa_net.py)."""
    space = get_space("compofa")
    method = build_method("compofa", space)
    for phase in method.phases[1:]:
        restricted = phase.sampler.restrict(space)
        assert restricted.size() == space.size() == 243, phase.name
        assert [s.depths for s in restricted.stages] == [s.depths for s in space.stages]


@pytest.mark.unit
def test_fofa_warns_off_the_coupled_space(monkeypatch):
    """fOFA is defined on CompOFA's space (paper §3.1); another space trains, with one warning
    (a run builds its method once: tests/test_run_plan.py)."""
    from ofa_tf.training import methods
    warnings = []
    monkeypatch.setattr(methods.logging, "warning", warnings.append)
    build_method("fofa", get_space("compofa"))
    assert warnings == []
    build_method("fofa", get_space("ofa_mbv3"))
    assert len(warnings) == 1 and "fOFA is defined on CompOFA's coupled space" in warnings[0]
    assert "'ofa_mbv3'" in warnings[0]


@pytest.mark.unit
def test_deps_k7_space_fixes_the_kernel_and_validates_a_deps_run():
    from ofa_tf.models import Supernet
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.runs.plan import RunPlan
    from ofa_tf.spaces import SPACES
    from ofa_tf.training.samplers import step_rng
    space = get_space("ofa_mbv3_k7")
    full = get_space("ofa_mbv3")
    assert "ofa_mbv3_k7" in SPACES and space.name == "ofa_mbv3_k7"
    assert {k for stage in space.stages[1:] for k in stage.kernels} == {7}
    assert [(s.depths, s.expands, s.widths) for s in space.stages] == [(s.depths, s.expands, s.widths)
                                                                        for s in full.stages]
    assert space.size() == (3 ** 2 + 3 ** 3 + 3 ** 4) ** 5
    config = RunConfig(method="deps", space="ofa_mbv3_k7", image_size=(32,))
    method = RunPlan.resolve(config).method
    archs = [arch for t in range(5) for _, arch in method.phases[1].sampler.sample(space, step_rng(0, t))]
    assert all(k == 7 for arch in archs for stage in arch.kernels[1:] for k in stage)
    model = Supernet("ofa_mbv3_k7", num_classes=10, resolutions=[32])
    assert model(np.zeros((1, 32, 32, 3), "float32"), arch=model.space.min_arch(), training=False).shape == (1, 10)
