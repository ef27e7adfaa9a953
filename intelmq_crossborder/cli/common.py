"""What every command shares: the error line, printable paths and the check of input paths."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, List, Optional


def fail(message: str, status: int = 2) -> int:
    """Print ``intelmq-crossborder: error: <message>`` on stderr; returns ``status``."""
    print(f"intelmq-crossborder: error: {message}", file=sys.stderr)
    return status


def printable(value) -> str:
    """Printable on any stream: undecodable bytes of a path (lone surrogates) escaped."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def short(value, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a value named in an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unusable(path: Path, *, file_only: bool = True, what: str = "file") -> Optional[str]:
    """Why ``path`` cannot be read as input (missing, a directory where a file is needed,
    permission denied), or None when it can."""
    if not path.exists():
        return f"{path}: no such file or directory"
    if path.is_dir() and file_only:
        return f"{path}: is a directory, not a {what}"
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"{path}: not readable (permission denied)"
    return None


def unusable_paths(paths: Iterable[Path], *, file_only: bool = True, what: str = "file") -> List[str]:
    """:func:`unusable` for each path: the problems, in order."""
    return [problem for problem in (unusable(p, file_only=file_only, what=what) for p in paths) if problem]
