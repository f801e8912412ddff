"""Reading and writing PyTorch state-dict files: the only module of ofa_tf that imports torch.

torch is optional (`pip install .[torch]`); without it these functions raise a one-line
`OfaError` saying how to install it, and nothing else of ofa_tf needs it.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ofa_tf.errors import OfaError
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
    truncated or non-PyTorch file is a one-line error naming `flag`."""
    require_torch()
    if not os.path.isfile(path):
        raise OfaError(f"{flag}={path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a bad file
        text = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        detail = f"{type(e).__name__}: {text}" if text else type(e).__name__
        raise OfaError(f"{flag}={path}: not a readable PyTorch checkpoint ({detail})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise OfaError(f"{flag}={path}: holds no state dict (expected a dict of tensors)")
    state = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise OfaError(f"{flag}={path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        state[str(name)] = value.detach().cpu().numpy()
    return state


def write_state_dict(path: str, state: dict[str, np.ndarray]) -> None:
    """Writes `state` with `torch.save` as an ordered dict of tensors, atomically."""
    require_torch()
    tensors = OrderedDict((name, torch.from_numpy(np.ascontiguousarray(value))) for name, value in state.items())
    atomic_write(path, lambda tmp: torch.save(tensors, tmp))
