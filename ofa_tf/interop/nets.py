"""The PyTorch OFA supernets ofa_tf can read and write, by their `net_id`.

OFA ("Once-for-All", arXiv:1908.09791) publishes its ImageNet supernets under these names
(`ofa.model_zoo.ofa_net(net_id)`). Each is one of our spaces at a width multiplier, with
two details of OFA's PyTorch code: its convolutions pad k//2 on every side
(`SearchSpace.padding="symmetric"`), and the MobileNetV3's feature-mix layer (our
`head_conv`) has no bias (`head_bias=False`). Its depthwise kernels use the learned kernel
transform. The ProxylessNAS net's BN epsilon is 1e-3 where ours is 1e-5: the import adds the
difference to the running variances (`mapping`), which is exact in inference.
"""

from __future__ import annotations

import dataclasses

from ofa_tf.errors import OfaError
from ofa_tf.spaces import SearchSpace, get_space

IMAGENET_CLASSES = 1000
KERNEL_MODE = "transform"


@dataclasses.dataclass(frozen=True)
class OfaNet:
    """One published supernet: our space and width, and the module tree its state dict has."""

    net_id: str
    space: str
    width_mult: float
    bn_epsilon: float  # OFA's BN epsilon for the net (its `bn_param` default)


DEFAULT_RESOLUTION = 224  # the input size of a specialised net whose run.config does not give one

NETS = {n.net_id: n for n in (
    OfaNet("ofa_mbv3_d234_e346_k357_w1.0", "ofa_mbv3", 1.0, 1e-5),
    OfaNet("ofa_mbv3_d234_e346_k357_w1.2", "ofa_mbv3", 1.2, 1e-5),
    OfaNet("ofa_proxyless_d234_e346_k357_w1.3", "proxyless", 1.3, 1e-3),
)}


def get_net(net_id: str) -> OfaNet:
    """The published supernet `net_id`; an unknown one is a one-line error listing the known."""
    if net_id not in NETS:
        raise OfaError(f"net_id={net_id!r}: expected one of {sorted(NETS)}")
    return NETS[net_id]


def ofa_space(net: OfaNet) -> SearchSpace:
    """Our space of `net`, with OFA's padding and bias-free head."""
    return dataclasses.replace(get_space(net.space, net.width_mult), padding="symmetric", head_bias=False)


def net_of_space(space: SearchSpace) -> OfaNet:
    """The published net whose layout `space` has (what `export_ofa` writes), or a one-line
    error saying why a space has none."""
    for net in NETS.values():
        if ofa_space(net).to_config() == dataclasses.replace(space, resolutions=ofa_space(net).resolutions).to_config():
            return net
    if space.name in {n.space for n in NETS.values()} and (space.padding, space.head_bias) != ("symmetric", False):
        raise OfaError(f"space {space.name!r} with padding={space.padding!r} head_bias={space.head_bias}: OFA's "
                       "networks pad symmetrically and have no head bias; only a run imported from OFA (or trained "
                       "with --space=IMPORTED_RUN/config.json) exports")
    raise OfaError(f"space {space.name!r} width_mult={space.width_mult}: no OFA network has this layout "
                   f"(known: {sorted(NETS)})")
