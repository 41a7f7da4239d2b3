"""The one exception type a user sees as a clear one-line message (exit code 2), never a traceback."""


class UserError(Exception):
    """Bad input from the user: a path, an option, a file. The message names it and says what is wrong."""
