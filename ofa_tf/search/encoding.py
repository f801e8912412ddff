"""Which space an arch encoding belongs to: a saved predictor's inputs are
`SearchSpace.encoder` columns, which only mean something for the space it was trained on."""

from __future__ import annotations

import hashlib
import json

from ofa_tf.spaces import SearchSpace


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of the space's whole config (stages, choices, resolutions), so a saved
    predictor can tell whether it was trained for this space."""
    text = json.dumps(space.to_config(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
