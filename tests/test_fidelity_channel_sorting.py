"""The channel sort of each preset as its reference does it (docs/methods.md): OFA's / DεpS's
grouped re-organisation keeps the function, and each preset sorts when and how its
reference does."""

import numpy as np
import pytest

from method_presets import EXPECTED
from ofa_tf import OfaError
from ofa_tf.spaces import get_space
from ofa_tf.training import build_method


@pytest.mark.unit
def test_grouped_channel_sorting_keeps_the_function_and_the_expand_groups():
    """OFA's / DεpS's re-organisation: with expand ratios {2, 3, 4} the channels that only
    ratio 4 uses stay behind those of ratio 3, each group sorted within itself; then the SE
    hidden channels are sorted."""
    import dataclasses
    from helpers import randomize_weights, tiny_space
    from ofa_tf.models import Supernet
    from ofa_tf.training import sort_mid_channels
    from ofa_tf.training.channel_sorting import mid_channel_groups
    space = tiny_space()
    space = dataclasses.replace(space, stages=(space.stages[0],) + tuple(
        dataclasses.replace(stage, expands=(2.0, 3.0, 4.0)) for stage in space.stages[1:]))
    model = Supernet(space, num_classes=4)
    model.build()
    randomize_weights(model, seed=6)
    x = np.random.default_rng(6).normal(size=(4, 16, 16, 3)).astype("float32")
    before = model(x, arch="max").numpy()
    blocks = [b for stage in model.stages for b in stage.blocks if b.mid_channel_variables()]
    groups = [mid_channel_groups(b) for b in blocks]
    assert all(g == [(0, 3 * b.max_in_channels), (3 * b.max_in_channels, 4 * b.max_in_channels)]
               for g, b in zip(groups, blocks))  # split at ratio 3's width only, as OFA's stage len - 2
    old = [b.mid_channel_importance() for b in blocks]
    # not vacuous: a global ranking would move channels across a group boundary
    assert any(imp[g[1][0]:g[1][1]].max() > imp[g[0][0]:g[0][1]].min() for imp, g in zip(old, groups))
    assert sort_mid_channels(model, mode="grouped") == len(blocks)
    np.testing.assert_allclose(model(x, arch="max").numpy(), before, atol=1e-5)
    for block, group, importance in zip(blocks, groups, old):
        new = block.mid_channel_importance()
        for start, end in group:
            np.testing.assert_allclose(np.sort(new[start:end]), np.sort(importance[start:end]), rtol=1e-6)
            assert np.all(np.diff(new[start:end]) <= 1e-6)
        if block.use_se:
            hidden = np.abs(block.se.expand_conv.kernel.numpy()).sum(axis=(0, 1, 3))
            assert np.all(np.diff(hidden) <= 1e-6)
    assert any(b.use_se for b in blocks)
    with pytest.raises(OfaError, match="channel sort mode='ofa'"):
        sort_mid_channels(model, mode="ofa")


@pytest.mark.unit
def test_presets_sort_channels_as_their_references():
    """DεpS sorts once, grouped (its code); OFA globally before expand_1 and grouped before
    expand_2 (`train_elastic_expand`'s stage len - 2); the others never."""
    expected = {"deps": [("shrink", "grouped")], "ofa": [("expand_1", "global"), ("expand_2", "grouped")]}
    for name in EXPECTED:
        method = build_method(name, get_space(EXPECTED[name]["space"]))
        assert [(p.name, p.sort_mode) for p in method.phases if p.sort_channels] == expected.get(name, []), name
    with pytest.raises(OfaError, match="sort_mode='ofa'"):
        build_method("deps").phases[1].__class__("x", 1.0, build_method("deps").phases[0].sampler, sort_mode="ofa")


@pytest.mark.unit
@pytest.mark.parametrize("sort_momentum", ["stay", "permute"])
def test_the_momentum_stays_at_the_deps_switch_as_depss_sort_leaves_it(sort_momentum):
    """DεpS's sort assigns the weights' `.data`: PyTorch's momentum buffers keep the old channel
    order. The preset does the same (`stay`); `permute` reorders them with their channels."""
    from helpers import randomize_weights, tiny_space
    from ofa_tf.training import OnceForAllModel, PhaseController
    from ofa_tf.training.optimizer import ReferenceSGD

    model = OnceForAllModel(tiny_space(), num_classes=3, max_subnets=3)
    model.build()
    randomize_weights(model, seed=2)
    method = build_method("deps", model.space, steps_per_epoch=1, epochs=4, sort_momentum=sort_momentum)
    assert build_method("deps").sort_momentum == "stay"
    model.compile(optimizer=ReferenceSGD(0.1))
    model.optimizer.build(model.supernet_trainable_variables)
    rng = np.random.default_rng(0)
    for buffer in model.optimizer.momentums:
        buffer.assign(rng.normal(size=buffer.shape).astype("float32"))
    before = [b.numpy().copy() for b in model.optimizer.momentums]
    controller = PhaseController(method, total_steps=4)
    controller.set_model(model)
    controller.prepare_step(1)
    controller.prepare_step(2)  # the switch: the grouped sort
    assert controller.phase.name == "shrink"
    unchanged = [np.array_equal(a, b.numpy()) for a, b in zip(before, model.optimizer.momentums)]
    assert all(unchanged) == (sort_momentum == "stay")
    if sort_momentum == "permute":  # the same values, reordered
        assert not all(unchanged) and all(np.allclose(np.sort(a, axis=None), np.sort(b.numpy(), axis=None))
                                          for a, b in zip(before, model.optimizer.momentums))
