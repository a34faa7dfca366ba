"""The one error type a user's mistake raises: printed as one line, exit status 2."""


class ExportError(Exception):
    """Bad input or an impossible request; the message names the problem and the fix."""
