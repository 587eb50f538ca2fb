"""User-facing errors: each says what was wrong, where, and what to do next."""

from __future__ import annotations


class ParityError(Exception):
    """Base class for errors Parity reports to a person (the CLI prints them without a traceback)."""


class InputError(ParityError):
    """Bad input in a file a user gave us, located by file, line and field where known."""

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        if field:
            where = f"{where} field {field!r}" if where else f"field {field!r}"
        super().__init__(f"{where}: {reason}" if where else reason)
