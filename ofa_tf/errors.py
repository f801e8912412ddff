"""User-facing errors.

Every mistake a user can make with a value (a space name, an arch field, a flag) raises
`OfaError`, whose message is one line that names the bad value and what was expected.
Command-line tools catch it at the top and exit non-zero with that line alone, so users
never see a traceback from deep inside TensorFlow for their own typo.
"""


class OfaError(ValueError):
    """A user-supplied value is invalid; the message names it and what was expected."""
