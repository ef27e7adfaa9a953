"""The one base exception of the library.

Every error the library raises on purpose (bad input, bad label, bad agreement, bad bundle,
unreachable peer...) derives from :class:`CrossBorderError`, so a caller that wants to catch
"anything this library refused" catches one class; a traceback of another type is a bug.
Subclasses that are also ``ValueError`` keep that base too, for callers that catch it.
"""
from __future__ import annotations

__all__ = ["CrossBorderError", "FormatError"]


class CrossBorderError(Exception):
    """Something the library refused or could not do, with a message fit for a log line."""


class FormatError(CrossBorderError, ValueError):
    """Input of a file or wire format that cannot be read: ``where`` names the file (or report)
    and ``field`` the JSON path; ``detail`` is the message without them."""

    def __init__(self, message: str, where: str = "", field: str = ""):
        self.where, self.field, self.detail = where, field, message
        text = message
        if field:
            text = f"field {field}: {text}"
        if where:
            text = f"{where}: {text}"
        super().__init__(text)
