"""The registered search spaces by name, and spaces read from a JSON file."""

from __future__ import annotations

from typing import Callable, Sequence

from ofa_tf.errors import OfaError
from ofa_tf.io import read_json
from ofa_tf.spaces import definitions
from ofa_tf.spaces.space import SearchSpace

SPACES: dict[str, Callable[[float], SearchSpace]] = {
    "ofa_mbv3": definitions.ofa_mbv3,
    "ofa_mbv3_k7": definitions.ofa_mbv3_k7,
    "compofa": definitions.compofa,
    "proxyless": definitions.proxyless,
    "tofa": definitions.tofa,
}


def get_space(name: str | SearchSpace, width_mult: float = 1.0,
              resolutions: Sequence[int] | None = None) -> SearchSpace:
    """The registered space `name` at `width_mult`, optionally with other input sizes.

    `name` may also be a JSON file holding `SearchSpace.to_config()` (a space of your own,
    or the "space" entry of a run's config.json); `width_mult` does not apply to it.

    Raises:
      OfaError: for an unknown name, an unreadable space file or a non-positive width multiplier.
    """
    if isinstance(name, SearchSpace):
        space = name
    elif name not in SPACES and name.endswith(".json"):
        space = _space_from_file(name)
    else:
        if name not in SPACES:
            raise OfaError(f"space={name!r}: expected one of {sorted(SPACES)}")
        if not isinstance(width_mult, (int, float)) or not (0 < width_mult < float("inf")):
            raise OfaError(f"width_mult={width_mult!r}: expected a positive number")
        space = SPACES[name](float(width_mult))
    return space.with_resolutions(resolutions) if resolutions else space


def _space_from_file(path: str) -> SearchSpace:
    try:
        config = read_json(path)
        return SearchSpace.from_config(config.get("space", config))
    except OSError as e:
        raise OfaError(f"space={path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise OfaError(f"space={path}: not a search space config ({type(e).__name__}: {e})") from None
