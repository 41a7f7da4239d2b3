"""The exceptions a user sees: bad input as one clear line (exit code 2), never a traceback."""


class UserError(ValueError):
    """Bad input from the user: a path, an option, a file, a keyword argument. The message names it and says
    what is wrong. A ValueError, so that Python callers catch it as they catch any bad value."""
