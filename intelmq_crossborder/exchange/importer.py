"""The receiver side of the exchange: check and import bundles, remember what was imported.

:class:`Importer` verifies a bundle (signature, trust, recipient, hash, count), checks the
sequence number against the per-sender state, hands the event lines out in chunks and
records after every chunk how far it got, so a crash resumes where it stopped.  Rejected
bundles are moved to the quarantine folder with a ``.reason.json`` next to them.  A bundle
whose id was already imported with the same data adds nothing.  The state
(``import-state.json``) is written atomically (:mod:`intelmq_crossborder.core.files`).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Union

from intelmq_crossborder.core.files import atomic_write_json, move_durably
from intelmq_crossborder.exchange.state import is_count, load_state
from intelmq_crossborder.formats import bundle as b

__all__ = ["Importer", "ImportResult", "RECENT_IDS_KEPT", "PULLED_NAMES_KEPT"]

PathLike = Union[str, Path]
#: emit(lines, manifest, first_index, chunk_number)
Emit = Callable[[List[bytes], b.Manifest, int, int], None]
RECENT_IDS_KEPT = 1000
PULLED_NAMES_KEPT = 10000


def _import_state_problem(state: dict) -> Optional[str]:
    peers = state.setdefault("peers", {})
    if not isinstance(peers, dict):
        return "peers: must be an object of sender hub -> state"
    for hub, peer in peers.items():
        if not isinstance(peer, dict):
            return f"peers.{hub}: must be an object"
        if not is_count(peer.setdefault("last_sequence", 0)):
            return f"peers.{hub}.last_sequence: must be an integer >= 0"
        recent = peer.setdefault("recent", {})
        if not (isinstance(recent, dict) and all(isinstance(v, str) for v in recent.values())):
            return f"peers.{hub}.recent: must be an object of bundle id -> sha256"
    progress = state.setdefault("in_progress", None)
    if progress is not None:
        if not isinstance(progress, dict):
            return "in_progress: must be an object or null"
        for name in ("bundle_id", "data_sha256"):
            if not isinstance(progress.get(name), str):
                return f"in_progress.{name}: must be a string"
        for name in ("next_line", "chunk"):
            if not is_count(progress.get(name, 0)):
                return f"in_progress.{name}: must be an integer >= 0"
    pulled = state.setdefault("pulled", [])
    if not (isinstance(pulled, list) and all(isinstance(n, str) for n in pulled)):
        return "pulled: must be a list of file names"
    return None


@dataclass
class ImportResult:
    path: Path
    status: str                 # imported | resumed | duplicate | rejected
    manifest: Optional[b.Manifest] = None
    lines_sent: int = 0
    reason: str = ""
    reason_code: str = ""
    security: str = ""          # e.g. "signed ed25519+ml-dsa-65, decrypted"


class Importer:
    """Check and import bundles addressed to ``hub_id`` (see module docstring).

    ``emit(lines, manifest, first_index, chunk_number)`` is called once per chunk
    of at most ``chunk_lines`` event lines (bytes, without newline); the state is
    committed after it returns.  If ``emit`` raises, nothing of that chunk is
    recorded and the next run resumes with it.
    """

    STATE = "import-state.json"

    def __init__(self, hub_id: str, trust: b.TrustStore, state_dir: PathLike, quarantine_dir: PathLike,
                 archive_dir: Optional[PathLike] = None,
                 chunk_lines: int = 1000, accept_first_sequence: bool = False,
                 logger: Optional[logging.Logger] = None, decryption_keys: Optional[b.DecryptionKeys] = None):
        self.hub_id = hub_id
        self.trust = trust
        self.state_dir = Path(state_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.archive_dir = Path(archive_dir) if archive_dir else None
        self.chunk_lines = max(1, int(chunk_lines))
        self.accept_first_sequence = accept_first_sequence
        #: this hub's HPKE keys; without them an encrypted bundle is rejected (no-decryption-key)
        self.decryption_keys = decryption_keys
        self.log = logger or logging.getLogger(__name__)
        for folder in filter(None, (self.state_dir, self.quarantine_dir, self.archive_dir)):
            folder.mkdir(parents=True, exist_ok=True)
        self.state = load_state(self.state_dir / self.STATE, {"peers": {}, "in_progress": None, "pulled": []},
                                _import_state_problem)

    def save(self) -> None:
        atomic_write_json(self.state_dir / self.STATE, self.state)

    def remember_pulled(self, names: Iterable[str]) -> None:
        """Record downloaded bundle names (the last PULLED_NAMES_KEPT), so they are not pulled again."""
        pulled = self.state.setdefault("pulled", [])
        pulled.extend(names)
        del pulled[:-PULLED_NAMES_KEPT]
        self.save()

    # --- helpers
    def quarantine(self, path: Path, error: b.BundleError, manifest: Optional[b.Manifest] = None) -> ImportResult:
        target = self.quarantine_dir / path.name
        if target.exists():
            target = self.quarantine_dir / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
        _move(path, target)
        info = {"file": _printable(path.name), "reason": error.reason, "message": _printable(str(error)),
                "quarantined_at": b.isoformat(b.utcnow())}
        if getattr(error, "algorithm", ""):
            info["algorithm"] = error.algorithm
        if manifest:
            info["manifest"] = manifest.to_dict()
        atomic_write_json(target.with_name(target.name + ".reason.json"), info)
        self.log.error("Rejected bundle %s (%s): %s. Moved to quarantine %s.",
                       path.name, error.reason, str(error).rstrip("."), target)
        return ImportResult(path, "rejected", manifest, reason=str(error), reason_code=error.reason)

    def _finish_file(self, path: Path) -> None:
        if self.archive_dir:
            target = self.archive_dir / path.name
            _move(path, target)
        else:
            path.unlink()

    def pending(self, inbox: PathLike) -> List[Path]:
        """Bundle files in the inbox (temporary files of transfers in progress are skipped)."""
        return sorted(p for p in Path(inbox).glob("*" + b.BUNDLE_SUFFIX) if not p.name.startswith("."))

    def run(self, inbox: PathLike, emit: Emit) -> List[ImportResult]:
        """Import everything in ``inbox``: per sender in sequence order; bad bundles to quarantine."""
        results, ready = [], []
        for path in self.pending(inbox):
            try:
                with b.open_bundle(path, self.trust, self.hub_id, self.decryption_keys) as opened:
                    ready.append((opened.manifest.sender, opened.manifest.sequence, path))
            except b.BundleError as exc:
                results.append(self.quarantine(path, exc))
        for _sender, _seq, path in sorted(ready):
            results.append(self.import_bundle(path, emit))
        return results

    def import_bundle(self, path: PathLike, emit: Emit) -> ImportResult:
        path = Path(path)
        try:
            opened = b.open_bundle(path, self.trust, self.hub_id, self.decryption_keys)
        except b.BundleError as exc:
            return self.quarantine(path, exc)
        with opened:
            m = opened.manifest
            peer = self.state["peers"].setdefault(m.sender, {"last_sequence": 0, "recent": {}})
            progress = self.state.get("in_progress")
            resuming = bool(progress and progress.get("bundle_id") == m.bundle_id
                            and progress.get("data_sha256") == m.data_sha256)
            if not resuming:
                seen = peer["recent"].get(m.bundle_id)
                if seen is not None:
                    if seen == m.data_sha256:
                        opened.close()
                        self._finish_file(path)
                        self.log.info("Bundle %s (%s) was already imported; nothing added.", m.bundle_id, path.name)
                        return ImportResult(path, "duplicate", m)
                    return self._reject(path, "replay", f"bundle id {m.bundle_id} was already imported with "
                                                        "different data", m, opened)
                last = int(peer["last_sequence"])
                if m.sequence <= last:
                    return self._reject(path, "replay", f"sequence {m.sequence} from {m.sender} is not newer than "
                                                        f"the last imported sequence {last}", m, opened)
                first_contact = last == 0 and self.accept_first_sequence
                if m.sequence != last + 1 and not first_contact:
                    return self._reject(path, "out-of-sequence", f"expected sequence {last + 1} from {m.sender}, "
                                                                 f"got {m.sequence}", m, opened)
            try:
                opened.verify_data()
            except b.BundleError as exc:
                opened.close()
                return self.quarantine(path, exc, m)
            if resuming:
                start, chunk_no = int(progress["next_line"]), int(progress.get("chunk", 0))
                self.log.info("Resuming import of %s at event %d of %d.", path.name, start, m.event_count)
            else:
                start, chunk_no = 0, 0
                self.state["in_progress"] = {"bundle_id": m.bundle_id, "sender": m.sender, "sequence": m.sequence,
                                             "data_sha256": m.data_sha256, "file": _printable(path.name),
                                             "next_line": 0, "chunk": 0}
                self.save()
            sent = 0
            batch, first = [], start
            for index, line in opened.iter_lines(start):
                if not batch:
                    first = index
                batch.append(line)
                if len(batch) >= self.chunk_lines:
                    sent += self._emit(emit, batch, m, first, chunk_no)
                    chunk_no += 1
                    batch = []
            if batch:
                sent += self._emit(emit, batch, m, first, chunk_no)
            peer["last_sequence"] = max(int(peer["last_sequence"]), m.sequence)
            peer["recent"][m.bundle_id] = m.data_sha256
            while len(peer["recent"]) > RECENT_IDS_KEPT:
                peer["recent"].pop(next(iter(peer["recent"])))
            self.state["in_progress"] = None
            self.save()
            security = "signed " + "+".join(opened.verified_algorithms) + (
                ", decrypted" if opened.decrypted else ", in clear")
        self._finish_file(path)
        self.log.info("Imported %s: %d events from %s (sequence %d; %s).", path.name, sent, m.sender, m.sequence,
                      security)
        return ImportResult(path, "resumed" if resuming else "imported", m, sent, security=security)

    def _emit(self, emit: Emit, batch: List[bytes], manifest: b.Manifest, first: int, chunk_no: int) -> int:
        emit(batch, manifest, first, chunk_no)
        progress = self.state["in_progress"]
        progress["next_line"] = first + len(batch)
        progress["chunk"] = chunk_no + 1
        self.save()
        return len(batch)

    def _reject(self, path: Path, code: str, message: str, manifest: b.Manifest,
                opened: b.VerifiedBundle) -> ImportResult:
        opened.close()
        return self.quarantine(path, b.BundleError(code, f"{path.name}: {message}"), manifest)


def _printable(text: str) -> str:
    """A file name (or a message naming one) as text that can be written as UTF-8: the lone
    surrogates Python uses for bytes of a name that are not UTF-8 are written escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _move(path: Path, target: Path) -> None:
    """Move a bundle out of the inbox: a durable rename on the same file system, else a copy."""
    try:
        same = os.stat(path).st_dev == os.stat(target.parent).st_dev
    except OSError:
        same = False
    if same:
        move_durably(path, target)
    else:
        shutil.move(str(path), str(target))
