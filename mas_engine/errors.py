"""User-facing errors: a MasError's message names the problem and the fix.

The command line prints it without a traceback; the add-on shows it in the panel.
"""


class MasError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class Cancelled(MasError):
    """Raised by long work when its cancel flag is set."""


class MissingDependency(MasError):
    """An optional package is not installed: every input would fail the same way."""
