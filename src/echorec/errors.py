"""The one exception type for user mistakes (bad files, bad flags, bad run folders).

The CLI prints it as a single `error: ...` line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class EchorecError(Exception):
    """A mistake in what the user gave us, with a message that says where and what."""
