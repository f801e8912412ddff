"""Search spaces as data (`SearchSpace`, `StageSpec`) and archs as values (`Arch`)."""

from ofa_tf.spaces.arch import Arch
from ofa_tf.spaces.costs import profile
from ofa_tf.spaces.registry import SPACES, get_space
from ofa_tf.spaces.space import SearchSpace, StageSpec

__all__ = ["Arch", "SPACES", "SearchSpace", "StageSpec", "get_space", "profile"]
