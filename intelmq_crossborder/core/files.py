"""Files that must survive a crash: THE place for atomic writes.

A reader (or the process after a power cut) sees the old content or the new, never a
part: data goes to a temporary file in the same folder, is flushed and fsynced, renamed
over the target, and the folder is fsynced so that the rename itself is durable.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

__all__ = ["atomic_output", "atomic_write", "atomic_write_text", "atomic_write_json", "fsync_dir", "move_durably"]

PathLike = Union[str, Path]


def fsync_dir(path: PathLike) -> None:
    """fsync a folder (makes a rename or a new file in it durable); best effort."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: PathLike, *, mode: Optional[int] = None, fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it replaces ``path`` atomically (and, with
    ``fsync``, durably), on an exception it is removed and ``path`` is left as it was.
    Creates missing parent folders; ``mode`` sets the permissions (default: mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: PathLike, data: bytes, *, mode: Optional[int] = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably (:func:`atomic_output`)."""
    with atomic_output(path, mode=mode) as fh:
        fh.write(data)


def atomic_write_text(path: PathLike, text: str, *, mode: Optional[int] = None) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: PathLike, obj: Any, *, mode: Optional[int] = None, indent: Optional[int] = 1) -> None:
    """:func:`atomic_write` of ``obj`` as JSON (sorted keys, so the same state gives the same bytes;
    non-ASCII escaped, so a lone surrogate from a file name that is not UTF-8 is written too)."""
    atomic_write(path, json.dumps(obj, sort_keys=True, indent=indent).encode("ascii"), mode=mode)


def move_durably(source: PathLike, target: PathLike) -> None:
    """Rename ``source`` to ``target`` (same file system) and fsync both folders."""
    source, target = Path(source), Path(target)
    os.replace(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)
