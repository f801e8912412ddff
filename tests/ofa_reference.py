"""OFA's own PyTorch supernets (the `ofa` package, unmodified), randomised for comparisons.

`ofa.utils` imports its ImageNet data loader, which needs torchvision; only that one module
is stubbed (no network here uses it), so the networks are OFA's real code.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch

sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))

from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3, OFAProxylessNASNets  # noqa: E402
from ofa.utils import count_net_flops, count_parameters  # noqa: E402

__all__ = ["NET_IDS", "count_net_flops", "count_parameters", "random_ofa", "random_ofa_mbv3", "state_numpy"]

# the published supernets by width: the MobileNetV3s at 1.0 and 1.2, the ProxylessNAS net at 1.3
NET_IDS = {1.0: "ofa_mbv3_d234_e346_k357_w1.0", 1.2: "ofa_mbv3_d234_e346_k357_w1.2",
           1.3: "ofa_proxyless_d234_e346_k357_w1.3"}


def random_ofa_mbv3(width_mult: float = 1.0, seed: int = 0, logit_scale: float = 100.0) -> torch.nn.Module:
    return random_ofa(width_mult, seed, logit_scale)


def random_ofa(width_mult: float = 1.0, seed: int = 0, logit_scale: float = 100.0) -> torch.nn.Module:
    """OFA's supernet of `NET_IDS[width_mult]` (kernel {3,5,7}, expand {3,4,6}, depth
    {2,3,4}), built as `ofa.model_zoo.ofa_net` builds it, in eval mode, with random BN
    statistics and affine parameters, biases, and kernel-transform matrices away from the
    identity. The classifier is scaled by `logit_scale` so that logits are tens, not
    tenths: a wrong padding or transform then moves them far beyond float error."""
    torch.manual_seed(seed)
    cls = OFAProxylessNASNets if "proxyless" in NET_IDS[width_mult] else OFAMobileNetV3
    net = cls(n_classes=1000, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
              width_mult=width_mult)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.1)
            elif name.endswith("matrix"):
                t.copy_(torch.eye(t.shape[0]) + 0.1 * torch.randn_like(t))
            elif ".bn." in name and name.endswith("weight"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("bias"):
                t.copy_(torch.randn_like(t) * 0.1)
        net.classifier.linear.weight.mul_(logit_scale)
    return net.eval()


def state_numpy(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
