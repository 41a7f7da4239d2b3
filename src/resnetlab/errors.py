"""The exceptions a user sees: bad input as one clear line (exit code 2), never a traceback; a run stopped by a
signal; a run whose loss diverged. Here, without torch, so that the CLI can name them before importing it."""

import signal


class UserError(ValueError):
    """Bad input from the user: a path, an option, a file, a keyword argument. The message names it and says
    what is wrong. A ValueError, so that Python callers catch it as they catch any bad value."""


class RunInUse(UserError):
    """The run folder is locked by another process training it; `reproduce` goes on with its next run.
    `holder` names that process ("process 1234")."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class RunInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM (or Ctrl-C): the loop stopped; `saved` says whether last.pt holds its last step.
    A KeyboardInterrupt, so that a library caller's `except Exception` does not swallow the user's Ctrl-C."""

    def __init__(self, signame: str, step: int, saved: bool) -> None:
        self.signame, self.step, self.saved = signame, step, saved
        self.exit_code = 128 + (signal.SIGTERM if signame == "SIGTERM" else signal.SIGINT)
        super().__init__(f"{signame}: stopped, {f'saved at iteration {step:,}' if saved else 'the last checkpoint is kept'}")


class TrainingDiverged(Exception):
    """The loss became NaN, infinite or exploded; the last good checkpoint is kept."""


class SettingError(UserError):
    """A training setting's bad value, by the setting's name: each front end renders it in its own terms (the
    command line `--flag`, a TOML file's `key = value`, the API's `keyword=`); the message is the flag's."""

    def __init__(self, name: str, value: object, problem: str) -> None:
        self.name, self.value, self.problem = name, value, problem
        super().__init__(self.as_flag())

    def as_flag(self) -> str:
        return f"--{self.name.replace('_', '-')} {self.problem}"

    def as_key(self) -> str:
        return f"{self.name} = {self.value!r}: {self.problem}"

    def as_keyword(self) -> str:
        return f"{self.name}={self.value!r}: {self.problem}"
