"""The stage tables of the built-in spaces (OFA, arXiv:1908.09791; DεpS, arXiv:2407.06167;
TOFA, arXiv:2303.15485, Table 1).

Each builder returns a `SearchSpace` whose widths are scaled by `width_mult` with
`make_divisible`, exactly as the reference implementations scale theirs.
"""

from __future__ import annotations

import dataclasses

from ofa_tf.spaces.divisible import make_divisible
from ofa_tf.spaces.space import SearchSpace, StageSpec

# ImageNet training sizes of OFA: 128..224 in steps of 4.
OFA_RESOLUTIONS = tuple(range(128, 225, 4))


def _scaled(widths, width_mult: float) -> tuple[int, ...]:
    return tuple(make_divisible(w * width_mult) for w in widths)


def ofa_mbv3(width_mult: float = 1.0) -> SearchSpace:
    """OFA's MobileNetV3 space: 5 elastic stages, kernel {3,5,7}, expand {3,4,6}, depth {2,3,4}."""
    w = lambda c: _scaled((c,), width_mult)  # noqa: E731
    first = StageSpec(widths=w(16), depths=(1,), kernels=(3,), expands=(1.0,), stride=1,
                      activation="relu", use_se=False)
    table = [(24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hard_swish", False),
             (112, 1, "hard_swish", True), (160, 2, "hard_swish", True)]
    stages = [first] + [
        StageSpec(widths=w(c), depths=(2, 3, 4), kernels=(3, 5, 7), expands=(3.0, 4.0, 6.0),
                  stride=stride, activation=act, use_se=se)
        for c, stride, act, se in table]
    return SearchSpace(
        name="ofa_mbv3", stem_widths=w(16), stem_activation="hard_swish", stages=tuple(stages),
        final_expand_ratio=6.0, head_widths=w(1280), head_activation="hard_swish",
        resolutions=OFA_RESOLUTIONS, width_mult=width_mult)


def ofa_mbv3_k7(width_mult: float = 1.0) -> SearchSpace:
    """ofa_mbv3 with the kernel fixed at 7 (depth {2,3,4}, expand {3,4,6}): the space DεpS
    trains (its README's command, `--ks_list 7`)."""
    base = ofa_mbv3(width_mult)
    stages = [base.stages[0]] + [dataclasses.replace(s, kernels=(7,)) for s in base.stages[1:]]
    return dataclasses.replace(base, name="ofa_mbv3_k7", stages=tuple(stages))


def compofa(width_mult: float = 1.0) -> SearchSpace:
    """CompOFA: ofa_mbv3 with kernels fixed per stage [3,5,3,3,5] and depth/expand coupled
    (d=2 -> e=3, d=3 -> e=4, d=4 -> e=6): 3^5 = 243 subnets per resolution."""
    base = ofa_mbv3(width_mult)
    coupling = ((2, 3.0), (3, 4.0), (4, 6.0))
    stages = [base.stages[0]] + [
        StageSpec(widths=s.widths, depths=s.depths, kernels=(k,), expands=s.expands, stride=s.stride,
                  activation=s.activation, use_se=s.use_se, expand_for_depth=coupling)
        for s, k in zip(base.stages[1:], (3, 5, 3, 3, 5))]
    return SearchSpace(
        name="compofa", stem_widths=base.stem_widths, stem_activation=base.stem_activation,
        stages=tuple(stages), final_expand_ratio=base.final_expand_ratio, head_widths=base.head_widths,
        head_activation=base.head_activation, resolutions=base.resolutions, width_mult=width_mult)


def proxyless(width_mult: float = 1.0) -> SearchSpace:
    """OFA's ProxylessNAS (MobileNetV2-style) space: ReLU6, no SE, 1x1 feature mix to 1280."""
    w = lambda c: _scaled((c,), width_mult)  # noqa: E731
    first = StageSpec(widths=w(16), depths=(1,), kernels=(3,), expands=(1.0,), stride=1,
                      activation="relu6", use_se=False)
    elastic = [StageSpec(widths=w(c), depths=(2, 3, 4), kernels=(3, 5, 7), expands=(3.0, 4.0, 6.0),
                         stride=stride, activation="relu6", use_se=False)
               for c, stride in ((24, 2), (40, 2), (80, 2), (96, 1), (192, 2))]
    last = StageSpec(widths=w(320), depths=(1,), kernels=(3, 5, 7), expands=(3.0, 4.0, 6.0), stride=1,
                     activation="relu6", use_se=False)
    # The 1280-channel feature-mix layer is not scaled down (as in OFA): ratio vs 320.
    last_width = w(320)[0]
    return SearchSpace(
        name="proxyless", stem_widths=w(32), stem_activation="relu6", stages=tuple([first] + elastic + [last]),
        final_expand_ratio=make_divisible(1280 * max(1.0, width_mult)) / last_width, head_widths=(),
        head_activation="relu6", resolutions=OFA_RESOLUTIONS, width_mult=width_mult)


def tofa(width_mult: float = 1.0) -> SearchSpace:
    """TOFA's FBNetV3-like space (arXiv:2303.15485, Table 1): elastic stage widths, depths up to 8,
    expand {2,4,6} and kernel {3,5} shared within a stage, SE on stages 3, 5, 6, 7."""
    w = lambda *c: _scaled(c, width_mult)  # noqa: E731
    table = [  # widths, depths, expands, stride, activation, se
        (w(16, 24), (1, 2), (1.0,), 1, "relu", False),
        (w(24, 32), (3, 4, 5), (2.0, 4.0, 6.0), 2, "relu", False),
        (w(32, 40), (3, 4, 5, 6), (2.0, 4.0, 6.0), 2, "hard_swish", True),
        (w(64, 72), (3, 4, 5, 6), (2.0, 4.0, 6.0), 2, "hard_swish", False),
        (w(112, 128), (3, 4, 5, 6, 7, 8), (2.0, 4.0, 6.0), 1, "hard_swish", True),
        (w(192, 216), (3, 4, 5, 6, 7, 8), (2.0, 4.0, 6.0), 2, "hard_swish", True),
        (w(216, 224), (1, 2), (2.0, 4.0, 6.0), 1, "hard_swish", True),
    ]
    stages = tuple(
        StageSpec(widths=widths, depths=depths, kernels=(3, 5), expands=expands, stride=stride,
                  activation=act, use_se=se, kernel_per_stage=True, expand_per_stage=True)
        for widths, depths, expands, stride, act, se in table)
    return SearchSpace(
        name="tofa", stem_widths=w(16, 24), stem_activation="hard_swish", stages=stages,
        final_expand_ratio=6.0, head_widths=w(1792, 1984), head_activation="hard_swish",
        resolutions=(192, 224, 256, 288, 320), width_mult=width_mult)
