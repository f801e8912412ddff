"""Reading and writing PyTorch state-dict files: the only module of ofa_tf that imports torch.

torch is optional (`pip install .[torch]`); without it these functions raise a one-line
`OfaError` saying how to install it, and nothing else of ofa_tf needs it.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ofa_tf.errors import OfaError, error_text
from ofa_tf.io import atomic_write

try:
    import torch
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None

INSTALL_HINT = "torch is not installed: pip install 'ofa_tf[torch]' (a CPU build is enough)"


def require_torch() -> None:
    """A one-line error when torch is missing."""
    if torch is None:
        raise OfaError(INSTALL_HINT)


def read_state_dict(path: str, flag: str = "checkpoint") -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint file as numpy arrays, by name.

    The file holds a state dict, or a dict with one under "state_dict" (OFA's published
    files). It is read with `weights_only=True`: no code in the file runs. A missing,
    truncated or non-PyTorch file is a one-line error naming `flag`. Floating-point tensors of
    any precision come back as float32 (`tensor_array`)."""
    require_torch()
    if not os.path.isfile(path):
        raise OfaError(f"{flag}={path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a bad file
        detail = f"{type(e).__name__}: {error_text(e, 120)}" if str(e).strip() else type(e).__name__
        raise OfaError(f"{flag}={path}: not a readable PyTorch checkpoint ({detail})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise OfaError(f"{flag}={path}: holds no state dict (expected a dict of tensors)")
    state = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise OfaError(f"{flag}={path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        state[str(name)] = tensor_array(value, f"{flag}={path}: entry {name!r}")
    return state


def tensor_array(value: "torch.Tensor", named: str) -> np.ndarray:
    """A tensor of a state dict as a numpy array: floating point of any width (bfloat16,
    float16, float64: a checkpoint saved in another precision) as float32, the precision
    ofa_tf's weights have; integers (BN's num_batches_tracked) as they are. Any other kind
    (complex, quantized, sparse) is a one-line error naming the entry (`named`)."""
    value = value.detach().cpu()
    if value.is_floating_point():
        value = value.to(torch.float32)  # numpy has no bfloat16: convert in torch
    elif value.is_complex() or value.is_quantized or value.layout != torch.strided:
        raise OfaError(f"{named}: a {value.dtype} {value.layout} tensor; expected floating-point or integer values")
    try:
        return value.numpy()
    except (TypeError, RuntimeError) as e:
        raise OfaError(f"{named}: a {value.dtype} tensor numpy cannot hold ({error_text(e, 80)})") from None


def write_state_dict(path: str, state: dict[str, np.ndarray]) -> None:
    """Writes `state` with `torch.save` as an ordered dict of tensors, atomically."""
    require_torch()
    tensors = OrderedDict((name, torch.from_numpy(np.ascontiguousarray(value))) for name, value in state.items())
    atomic_write(path, lambda tmp: torch.save(tensors, tmp))
