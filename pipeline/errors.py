"""procpipe's exceptions. Every refusal carries the stage and a one-line reason a person can act on."""

from __future__ import annotations


class ProcpipeError(Exception):
    """Base class of every error procpipe raises on purpose."""


class RejectedPage(ProcpipeError):
    """A page that cannot become a record. ``str(exc)`` is the one-line reason."""

    def __init__(self, reason: str, *, stage: str = "parse", detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.detail = detail


class UsageError(ProcpipeError):
    """Bad arguments or configuration given by the user (exit code 2)."""
