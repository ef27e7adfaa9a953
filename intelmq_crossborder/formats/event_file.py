"""The JSON-lines event file of the file outputs, and retractions applied to it.

One event per line, as IntelMQ's file output writes it (flat keys, or ``hierarchical_output``'s
nested objects).  The cross-border file output (docs/bots/file.md) appends with
:class:`EventFile`; ``intelmq-crossborder retraction purge`` applies the tombstone lines a stock
file output wrote.  Both remove a retraction's target with :func:`purge`:

- which lines are the target is :func:`intelmq_crossborder.policy.retraction.instruction`'s
  decision on the line's ``provenance.event_uuid`` and ``provenance.fingerprint`` (an erase, or a
  relabel above the output's ceiling, says :data:`REMOVE`); retraction lines (the tombstones)
  are kept when they read strictly (a "retraction" line with content is an unreadable line);
- the file is read twice, streaming (a line of any length costs at most ``max_line`` bytes of
  memory), and only when something goes is it rewritten, atomically (:mod:`core.files`): an
  erased value is gone from the file, not hidden;
- a line that cannot be read (not UTF-8, not JSON, not an object, ids of the wrong type, longer
  than ``max_line``, a half-written last line) is kept as it is and counted, except that for a
  removal a line holding one of the target's ids as text goes too: it may be a damaged copy of
  the target, and an erase must fail closed.

:func:`rotated` finds a file's rotated siblings (``events.txt.1``, ``events.txt-20261201``);
compressed archives are listed apart: nothing here reads or rewrites them.
"""
from __future__ import annotations

import datetime as _dt
import glob
import os
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.files import atomic_output, fsync_dir
from intelmq_crossborder.policy.retraction import (KEEP, REMOVE, Retraction, RetractionError, instruction,
                                                   is_confirmation, is_retraction)

__all__ = ["MAX_LINE", "COMPRESSED", "EventFile", "Purged", "flat_record", "record_ids", "purge", "tombstones",
           "rotated", "format_name", "pattern_glob", "FileNameError"]

PathLike = Union[str, Path]
MAX_LINE = 16 * 1024 * 1024          # a longer line is not parsed (kept as it is, counted)
_CHUNK = 1024 * 1024
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".lzma", ".Z", ".zip")
_ROTATED = re.compile(r"[.-]([0-9]{1,6}|[0-9]{8}(?:[0-9]{2}(?:[0-9]{4})?)?)")


class FileNameError(ValueError):
    """A file name that an event's values cannot fill in safely (``format_filename``)."""


# --- reading one line ------------------------------------------------------------------------

def flat_record(value: Mapping[str, Any]) -> Dict[str, Any]:
    """A line's record with IntelMQ's flat keys (a ``hierarchical_output`` line is flattened;
    depth is bounded by :func:`core.inputs.loads_json`)."""
    out: Dict[str, Any] = {}
    stack: List[Tuple[str, Any]] = [("", value)]
    while stack:
        prefix, item = stack.pop()
        for key, sub in item.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(sub, dict) and sub and not name.startswith("extra."):
                stack.append((name, sub))
            else:
                out[name] = sub
    return out


def record_ids(rec: Mapping[str, Any]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(event uuid, fingerprint, problem)`` of a flat record; ``problem`` names a wrong type."""
    ids = []
    for name in ("provenance.event_uuid", "provenance.fingerprint"):
        value = rec.get(name)
        if value is not None and not isinstance(value, str):
            return None, None, f"field {name}: {inputs.kind_of(value)}, not a string"
        ids.append(value or None)
    return ids[0], ids[1], None


# --- streaming over the lines ------------------------------------------------------------------

@dataclass
class _Line:
    offset: int
    length: int
    data: Optional[bytes]          # None: longer than max_line
    hits: bool                     # holds one of the needles as text (checked for long lines only)


def _lines(fh: BinaryIO, max_line: int, needles: Sequence[bytes]) -> Iterator[_Line]:
    offset = 0
    overlap_len = max((len(n) for n in needles), default=1) - 1
    while True:
        chunk = fh.readline(max_line + 1)
        if not chunk:
            return
        if len(chunk) <= max_line or chunk.endswith(b"\n"):
            yield _Line(offset, len(chunk), chunk, False)
            offset += len(chunk)
            continue
        length, hits, tail = len(chunk), any(n in chunk for n in needles), chunk
        overlap = chunk[-overlap_len:] if overlap_len else b""
        while not tail.endswith(b"\n"):
            tail = fh.readline(_CHUNK)
            if not tail:
                break
            window = overlap + tail
            hits = hits or any(n in window for n in needles)
            overlap = window[-overlap_len:] if overlap_len else b""
            length += len(tail)
        yield _Line(offset, length, None, hits)
        offset += length


@dataclass
class Purged:
    """What :func:`purge` found and did in one file."""

    path: Path
    lines: int = 0
    held: Counter = field(default_factory=Counter)          # retraction id -> lines of its target
    removed: Counter = field(default_factory=Counter)       # retraction id -> lines removed
    removed_ids: Dict[str, set] = field(default_factory=dict)   # retraction id -> {uuid or fingerprint}
    unreadable: int = 0                                      # lines kept as they are
    unreadable_removed: int = 0                              # unreadable lines naming a removed target
    problems: List[str] = field(default_factory=list)        # the first few unreadable lines, named
    tombstones: int = 0
    rewritten: bool = False

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values()) + self.unreadable_removed

    def _bad(self, number: int, reason: str) -> None:
        self.unreadable += 1
        if len(self.problems) < 20:
            self.problems.append(f"{self.path}:{number}: {reason}")


def _needles(msgs: Sequence[Retraction]) -> List[bytes]:
    out = []
    for m in msgs:
        out += [v.encode("ascii") for v in (m.target_event_uuid, m.target_fingerprint) if v]
    return out


def _decide(msgs: Sequence[Retraction], rec: Dict[str, Any], ceiling: Optional[tlp.Level]) -> List[Tuple[Retraction, str]]:
    """``(retraction, instruction)`` for each retraction that names this record."""
    uuid, fp, _ = record_ids(rec)
    out = []
    for m in msgs:
        if m.is_confirmation or not m.matches(uuid, fp):
            continue
        level = None
        if m.action == "relabel" and ceiling is not None:
            try:
                level = tlp.event_tlp(rec).level
            except tlp.LabelError:
                out.append((m, REMOVE))          # unreadable labels: fail closed
                continue
        out.append((m, instruction(m, event_uuid=uuid, fingerprint=fp, level=level, ceiling=ceiling)))
    return out


def purge(path: PathLike, retractions: Sequence[Retraction], *, ceiling: Optional[tlp.Level] = None,
          max_line: int = MAX_LINE, fsync: bool = True, dry_run: bool = False) -> Purged:
    """Apply ``retractions`` to the event file ``path``: every line whose instruction is
    :data:`REMOVE` (an erase; a relabel above ``ceiling``) leaves the file, which is rewritten
    atomically when anything goes (never with ``dry_run``).  Returns what was found (``held``:
    lines of each target, whatever the instruction) and removed.  A missing file holds nothing.
    ``OSError`` of an unreadable file propagates."""
    path = Path(path)
    result = Purged(path)
    msgs = [m for m in retractions if not m.is_confirmation]
    if not msgs or not path.is_file():
        return result
    removing = [m for m in msgs if m.action == "erase" or (m.action == "relabel" and ceiling is not None)]
    needles = _needles(removing)
    drop: List[Tuple[int, int]] = []
    with open(path, "rb") as fh:
        before = os.fstat(fh.fileno())
        for number, line in enumerate(_lines(fh, max_line, needles), 1):
            result.lines += 1
            if line.data is None:
                if line.hits:
                    result.unreadable_removed += 1
                    if len(result.problems) < 20:
                        result.problems.append(f"{path}:{number}: longer than {max_line} bytes; it names a "
                                               "removed target: removed")
                    drop.append((line.offset, line.length))
                else:
                    result._bad(number, f"longer than {max_line} bytes; kept as it is")
                continue
            if not line.data.strip():
                continue
            try:
                value = inputs.loads_json(line.data, path, line=number)
            except inputs.InputError as exc:
                value, reason = None, exc.reason
            else:
                reason = None if isinstance(value, dict) else f"{inputs.kind_of(value)}, not an event object"
            rec = flat_record(value) if reason is None else {}
            if reason is None and is_retraction(rec):
                try:
                    Retraction.from_event({k: v for k, v in rec.items() if k != "__type"})
                except RetractionError as exc:
                    reason = f"a retraction line that cannot be read ({exc})"     # may carry content
                else:
                    result.tombstones += 1
                    continue
            elif reason is None:
                reason = record_ids(rec)[2]
            if reason is not None:
                if any(n in line.data for n in needles):
                    result.unreadable_removed += 1
                    if len(result.problems) < 20:
                        result.problems.append(f"{path}:{number}: {reason}; it names a removed target: removed")
                    drop.append((line.offset, line.length))
                else:
                    result._bad(number, f"{reason}; kept as it is")
                continue
            verdicts = _decide(msgs, rec, ceiling)
            gone = False
            for m, what in verdicts:
                if what == KEEP:
                    continue
                result.held[m.id] += 1
                if what == REMOVE and not gone:
                    gone = True
                    result.removed[m.id] += 1
                    uuid, fp, _ = record_ids(rec)
                    result.removed_ids.setdefault(m.id, set()).add(uuid or fp or "?")
            if gone:
                drop.append((line.offset, line.length))
    if drop and not dry_run:
        _rewrite(path, drop, before, fsync)
        result.rewritten = True
    return result


def _rewrite(path: Path, drop: List[Tuple[int, int]], before: os.stat_result, fsync: bool) -> None:
    """Copy ``path`` without the byte ranges ``drop`` and replace it atomically, keeping its
    permissions.  A file that changed since it was read is refused: read it again."""
    with open(path, "rb") as src:
        now = os.fstat(src.fileno())
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
            raise OSError(f"{path}: changed while it was read (is an output still writing to it?); nothing "
                          "removed, try again")
        with atomic_output(path, mode=now.st_mode & 0o7777, fsync=fsync) as dst:
            position = 0
            for offset, length in drop:
                _copy(src, dst, offset - position)
                src.seek(offset + length)
                position = offset + length
            _copy(src, dst, None)


def _copy(src: BinaryIO, dst: BinaryIO, count: Optional[int]) -> None:
    while count is None or count > 0:
        block = src.read(_CHUNK if count is None else min(_CHUNK, count))
        if not block:
            return
        dst.write(block)
        if count is not None:
            count -= len(block)


def tombstones(path: PathLike, *, max_line: int = MAX_LINE) -> Tuple[List[Tuple[int, Retraction]], List[str]]:
    """The retraction lines of an event file, read strictly: ``([(line, retraction)], problems)``;
    a retraction line that cannot be read is a problem naming file, line and field.
    Confirmations are left out (they name no target to apply)."""
    found: List[Tuple[int, Retraction]] = []
    problems: List[str] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(_lines(fh, max_line, ()), 1):
            if line.data is None or not line.data.strip():
                continue
            try:
                value = inputs.loads_json(line.data, path, line=number)
            except inputs.InputError:
                continue                      # an unreadable line is purge()'s to count
            if not isinstance(value, dict):
                continue
            rec = flat_record(value)
            if not is_retraction(rec) or is_confirmation(rec):
                continue
            try:
                found.append((number, Retraction.from_event({k: v for k, v in rec.items() if k != "__type"})))
            except RetractionError as exc:
                problems.append(f"{path}:{number}: {exc}")
    return found, problems


# --- file names --------------------------------------------------------------------------------

def rotated(path: PathLike) -> Tuple[List[Path], List[Path]]:
    """The rotated siblings of ``path`` in its folder: ``(plain, compressed)``.  Plain:
    ``<name>.N`` and ``<name>-YYYYMMDD[HH[MMSS]]`` (logrotate's numbered and ``dateext``
    names); compressed: the same with a suffix of :data:`COMPRESSED`, which nothing here reads."""
    path = Path(path)
    plain: List[Path] = []
    packed: List[Path] = []
    try:
        entries = sorted(path.parent.iterdir())
    except OSError:
        return plain, packed
    for entry in entries:
        name = entry.name
        if not name.startswith(path.name) or name == path.name or not entry.is_file():
            continue
        rest = name[len(path.name):]
        suffix = next((s for s in COMPRESSED if rest.endswith(s)), "")
        if _ROTATED.fullmatch(rest[:len(rest) - len(suffix)] if suffix else rest):
            (packed if suffix else plain).append(entry)
    return plain, packed


def _time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def format_name(pattern: str, event: Mapping[str, Any]) -> Path:
    """The file name of ``pattern`` for ``event`` (``format_filename``, as IntelMQ's file output:
    ``{event[feed.name]}``, times as datetimes: ``{event[time.source]:%Y-%m-%d}``).  Refused
    (:class:`FileNameError`): a missing field, a bad format, and a value that would leave the
    pattern's folder (``/``, ``..``, NUL, a leading dot)."""
    values = {k: _time(v) if k in ("time.source", "time.observation") else v for k, v in event.items()}
    try:
        parts = list(string.Formatter().parse(pattern))
        name = pattern.format(event=values)
        pieces = [(fname, ("{" + fname + ("!" + conv if conv else "") + (":" + spec if spec else "") + "}")
                   .format(event=values)) for _, fname, spec, conv in parts if fname is not None]
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise FileNameError(f"file name pattern {pattern!r}: cannot fill it in from this event "
                            f"({type(exc).__name__}: {str(exc)[:100]})") from None
    for fname, piece in pieces:
        if "/" in piece or "\x00" in piece or piece.startswith(".") or "\\" in piece or len(piece) > 200:
            raise FileNameError(f"file name pattern {pattern!r}: the value {piece[:80]!r} of {fname} would leave "
                                "the pattern's folder or is not a file name part; refused")
    return Path(name)


def pattern_glob(pattern: str) -> List[Path]:
    """Every existing file a ``format_filename`` pattern can have written (each replacement
    field read as ``*``)."""
    text = "".join(glob.escape(lit) + ("*" if fname is not None else "")
                   for lit, fname, _, _ in string.Formatter().parse(pattern))
    return sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())


# --- appending ---------------------------------------------------------------------------------

class EventFile:
    """One event file, appended to line by line (opened on first use, ``mode='ab'``)."""

    def __init__(self, path: PathLike, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fh: Optional[BinaryIO] = None

    def _open(self) -> BinaryIO:
        if self._fh is None:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "ab")
            if fh.tell() > 0:
                with open(self.path, "rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        fh.write(b"\n")      # a half-written last line stays a line of its own
            self._fh = fh
            if new and self.fsync:
                fsync_dir(self.path.parent)
        return self._fh

    def append(self, line: bytes) -> None:
        """Append one line (``line`` without its newline), flushed; fsynced with ``fsync``.
        A file removed under the output (``FileNotFoundError`` cannot happen on an open
        handle; a rotated one keeps being written until :meth:`close`) is reopened by the caller."""
        if b"\n" in line:
            raise ValueError("an event line holds a newline")
        fh = self._open()
        fh.write(line + b"\n")
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            finally:
                self._fh = None

    def reopen_if_moved(self) -> None:
        """Close the handle when the file at ``path`` is no longer the one written (rotated or
        removed): the next append opens the new one."""
        if self._fh is None:
            return
        try:
            same = os.path.samestat(os.fstat(self._fh.fileno()), os.stat(self.path))
        except OSError:
            same = False
        if not same:
            self.close()
