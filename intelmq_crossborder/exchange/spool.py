"""The sender's spool: the open bundle of one sender→recipient pair, and its sealing journal.

Every event is appended as one JSON line to ``spool.jsonl`` and flushed to the operating
system before the bot acknowledges it, so a stopped or killed bot loses nothing it
acknowledged.  :meth:`Spool.seal` turns the spool into a signed bundle in the outbox.
Sealing is a small journal: the spool is renamed to ``sealing.jsonl``, the bundle is written
to a temporary file and renamed into the outbox, then the sequence number is committed and
``sealing.jsonl`` removed.  :meth:`Spool.recover` (run at start) finishes an interrupted seal
without reusing or skipping a sequence number, and cuts a half-written last line (that event
was never acknowledged, IntelMQ delivers it again).

A stop between the append and IntelMQ's acknowledgement makes IntelMQ deliver the last
spooled message once more after the restart: :class:`RedeliveryGuard` recognises it by the
digest of the last spooled (or last sealed) line.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

from intelmq_crossborder.core.files import atomic_write, atomic_write_json, move_durably
from intelmq_crossborder.core.fingerprint import digest
from intelmq_crossborder.exchange.state import is_count, is_time, load_state, remove_temp_files
from intelmq_crossborder.formats import bundle as b

__all__ = ["Spool", "RedeliveryGuard"]


def _spool_state_problem(state: dict) -> Optional[str]:
    if not is_count(state.get("next_sequence", 1), 1):
        return "next_sequence: must be an integer >= 1"
    for name in ("spool_opened_at", "sealing_opened_at"):
        if not is_time(state.get(name)):
            return f"{name}: must be a time in seconds or null"
    if not isinstance(state.get("last_bundle", ""), (str, type(None))):
        return "last_bundle: must be a file name"
    if not isinstance(state.get("last_line_sha256", ""), (str, type(None))):
        return "last_line_sha256: must be a SHA-256 (hex) or null"
    return None


class Spool:
    """The open bundle of one sender→recipient pair (see module docstring)."""

    SPOOL = "spool.jsonl"
    SEALING = "sealing.jsonl"
    STATE = "state.json"

    def __init__(self, directory: Union[str, Path], outbox: Union[str, Path], sender: str, recipient: str,
                 signing_key, fsync_each: bool = False, compresslevel: int = 6,
                 sent_dir: Optional[Union[str, Path]] = None, logger: Optional[logging.Logger] = None,
                 encryption_key: Optional[Callable[[], Optional[b.TrustedKey]]] = None):
        """``signing_key``: an Ed25519 key or a :class:`~intelmq_crossborder.formats.bundle.SigningKeys`
        set (hybrid).  ``encryption_key``: called at every seal, returns the recipient's
        encryption key (:meth:`~intelmq_crossborder.formats.bundle.TrustStore.encryption_key`,
        the trust store read again) or None to seal the data in clear; a
        :class:`~intelmq_crossborder.formats.bundle.BundleError` it raises fails the seal (the
        events stay in the spool)."""
        self.dir = Path(directory)
        self.outbox = Path(outbox)
        self.sent_dir = Path(sent_dir) if sent_dir else None
        self.sender, self.recipient = sender, recipient
        self._key = signing_key
        self._encryption_key = encryption_key
        self.fsync_each = fsync_each
        self.compresslevel = compresslevel
        self.log = logger or logging.getLogger(__name__)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.state = load_state(self.dir / self.STATE, {"next_sequence": 1}, _spool_state_problem)
        self.count = 0
        self.opened_at: Optional[float] = None
        self.last_line: Optional[bytes] = None
        self._fh = None

    # state
    def _save_state(self) -> None:
        atomic_write_json(self.dir / self.STATE, self.state)

    @property
    def next_sequence(self) -> int:
        return int(self.state.get("next_sequence", 1))

    def recover(self) -> List[Path]:
        """Clean up after a crash; returns bundles sealed while doing so."""
        for name in remove_temp_files(self.outbox):
            self.log.info("Removed temporary file %s left by an interrupted seal.", name)
        sealed = []
        if (self.dir / self.SEALING).exists():
            self.log.info("Finishing an interrupted seal of %s.", self.dir / self.SEALING)
            path = self._finish_seal()
            if path:
                sealed.append(path)
        spool = self.dir / self.SPOOL
        if spool.exists():
            self.count, self.last_line = self._repair_and_count(spool)
            self.opened_at = (self.state.get("spool_opened_at") or spool.stat().st_mtime) if self.count else None
            if self.count:
                self.log.info("Reopened spool with %d events for %s.", self.count, self.recipient)
        return sealed

    def redelivery_digest(self) -> Optional[str]:
        """Digest of the message IntelMQ may deliver again after a stop between :meth:`append`
        and its acknowledgement: the last spooled line, or, when the spool was sealed since,
        the last line of that seal (recorded in the state)."""
        if self.last_line is not None:
            return digest(self.last_line)
        return self.state.get("last_line_sha256")

    @staticmethod
    def _repair_and_count(path: Path) -> Tuple[int, Optional[bytes]]:
        """Cut a half-written last line; count lines; remember the last complete line."""
        size = path.stat().st_size
        count, last, good_end = 0, None, 0
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                count += 1
                good_end += len(line)
                last = line[:-1]
        if good_end != size:
            with open(path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return count, last

    def _open(self):  # -> the spool file, open for appending
        if self._fh is None:
            if not (self.dir / self.SPOOL).exists() or self.opened_at is None:
                self.opened_at = time.time()
                self.state["spool_opened_at"] = self.opened_at
                self._save_state()
            self._fh = open(self.dir / self.SPOOL, "ab")
        return self._fh

    def append(self, line: bytes) -> None:
        """Append one event line; it is durable against a process crash when this returns."""
        if b"\n" in line:
            raise ValueError("an event line must not contain a newline")
        fh = self._open()
        fh.write(line + b"\n")
        fh.flush()
        if self.fsync_each:
            os.fsync(fh.fileno())
        self.count += 1
        self.last_line = line

    def rewrite(self, change: Callable[[bytes], Optional[bytes]]) -> Tuple[int, int]:
        """Rewrite the open spool (and the spool of an interrupted seal) line by line, for a
        retraction: ``change(line)`` returns the line, a new line, or None to delete it.  The
        new spool replaces the old atomically (the deleted values are gone from the file, not
        only hidden); returns (lines deleted, lines changed)."""
        self.close()
        deleted = changed = 0
        for name in (self.SEALING, self.SPOOL):
            path = self.dir / name
            if not path.exists():
                continue
            kept: list = []
            with open(path, "rb") as fh:
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break                      # a half-written last line: never acknowledged
                    line = raw[:-1]
                    new = change(line)
                    if new is None:
                        deleted += 1
                        continue
                    if new != line:
                        changed += 1
                    kept.append(new)
            if deleted or changed:
                atomic_write(path, b"".join(line + b"\n" for line in kept))
            if name == self.SPOOL:
                self.count = len(kept)
                self.last_line = kept[-1] if kept else None
                if not kept:
                    self.opened_at = None
        return deleted, changed

    def age(self, now: Optional[float] = None) -> float:
        """Seconds since the first event of the open spool (0 when it is empty)."""
        if not self.count or self.opened_at is None:
            return 0.0
        return (now or time.time()) - self.opened_at

    def close(self) -> None:
        """Flush and fsync the open spool (kept for the next start)."""
        if self._fh is not None:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
                self._fh = None

    def seal(self, seal_empty: bool = False) -> Optional[Path]:
        """Close the open bundle; returns the path of the signed bundle in the outbox (or None)."""
        self.close()
        if (self.dir / self.SEALING).exists():
            # An earlier seal failed half-way (outbox full or read-only): finish it first. Moving
            # the spool onto it would overwrite (lose) the events it holds.
            self.log.info("Finishing the earlier, interrupted seal of %s first.", self.dir / self.SEALING)
            self._finish_seal()
        if not self.count and not seal_empty:
            return None
        spool = self.dir / self.SPOOL
        if not spool.exists():
            spool.touch()
        self.state["sealing_opened_at"] = self.opened_at or time.time()
        self.state["spool_opened_at"] = None
        if self.last_line is not None:
            self.state["last_line_sha256"] = digest(self.last_line)
        self._save_state()
        move_durably(spool, self.dir / self.SEALING)
        self.count, self.opened_at = 0, None
        return self._finish_seal()

    def _existing_bundle(self, sequence: int) -> Optional[Path]:
        pattern = f"{self.sender}_{self.recipient}_{sequence:010d}_*{b.BUNDLE_SUFFIX}"
        for folder in filter(None, (self.outbox, self.sent_dir)):
            for path in folder.glob(pattern):
                return path
        return None

    def _finish_seal(self) -> Optional[Path]:
        sealing = self.dir / self.SEALING
        sequence = self.next_sequence
        path = self._existing_bundle(sequence)
        if path is None:
            opened = self.state.get("sealing_opened_at") or sealing.stat().st_mtime
            window_start = dt.datetime.fromtimestamp(opened, dt.timezone.utc)
            encrypt_to = self._encryption_key() if self._encryption_key is not None else None
            writer = b.BundleWriter(self.outbox, self.sender, self.recipient, sequence, self._key,
                                    window_start=window_start, compresslevel=self.compresslevel,
                                    encrypt_to=encrypt_to)
            try:
                with open(sealing, "rb") as fh:
                    for line in fh:
                        line = line.rstrip(b"\n")
                        if line:
                            writer.write_line(line)
            except BaseException:
                writer.abort()
                raise
            path = writer.close()
            self.log.info("Sealed bundle %s with %d events for %s.", path.name, writer.count, self.recipient)
        else:
            self.log.info("Bundle %s was already sealed before the interruption.", path.name)
        self.state["next_sequence"] = sequence + 1
        self.state["sealing_opened_at"] = None
        self.state["last_bundle"] = path.name
        self._save_state()
        sealing.unlink()
        return path


class RedeliveryGuard:
    """Recognises the message IntelMQ may deliver again after a restart.

    ``expected`` is :meth:`Spool.redelivery_digest` at start.  Only the first message after
    the start is compared: :meth:`is_repeat` disarms the guard whatever the answer.
    """

    def __init__(self, expected: Optional[str]):
        self.expected = expected

    def is_repeat(self, line: bytes) -> bool:
        expected, self.expected = self.expected, None
        return expected is not None and digest(line) == expected
