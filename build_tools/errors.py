"""The error a command raises for a user's mistake; the CLI prints it as one line, exit 2."""


class UserError(Exception):
    """Bad input; the message names the problem and the fix."""
