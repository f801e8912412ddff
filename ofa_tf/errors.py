"""User-facing errors.

Every mistake a user can make with a value (a space name, an arch field, a flag) raises
`OfaError`, whose message is one line that names the bad value and what was expected.
Command-line tools catch it at the top and exit non-zero with that line alone, so users
never see a traceback from deep inside TensorFlow for their own typo.
"""


class OfaError(ValueError):
    """A user-supplied value is invalid; the message names it and what was expected."""


def error_text(error: BaseException | str, limit: int = 160) -> str:
    """The first line of an error's message (or of a message), whitespace collapsed, at most
    `limit` characters, for quoting it inside a one-line `OfaError`; an error with no message
    gives its type's name."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if not lines:
        return error.__class__.__name__ if isinstance(error, BaseException) else ""
    return " ".join(lines[0].split())[:limit]
