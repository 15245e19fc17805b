"""Typed errors with a hint a person can act on.

The library raises these; only `verbs.main` and the CLI turn them into replies or messages.
"""

from __future__ import annotations


class FlexvolError(Exception):
    """An error whose message is meant for the person reading the pod event or the terminal."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class InvalidInput(FlexvolError):
    """The call's arguments or options are wrong; nothing was touched."""


class Refused(FlexvolError):
    """The request is well formed but would lose or expose data, so it was refused."""


class Conflict(Refused):
    """What is already in place differs from what the call asks (mounted read-only, asked
    read-write): the call would have to undo it first."""


class Busy(FlexvolError):
    """Another call holds the volume's lock for longer than we wait."""


class ProbeFailed(FlexvolError):
    """A device could not be identified with certainty, so it is not formatted."""


class StateCorrupt(FlexvolError):
    """An on-disk record cannot be read."""


class CommandFailed(FlexvolError):
    """An external command exited with an unexpected status."""

    def __init__(self, message: str, hint: str = "", *, argv: list[str] | None = None,
                 code: int | None = None, stderr: str = "", stdout: str = "") -> None:
        super().__init__(message, hint)
        self.argv = argv or []
        self.code = code
        self.stderr = stderr
        self.stdout = stdout


class CommandTimedOut(CommandFailed):
    """An external command ran past its time limit and was killed."""
