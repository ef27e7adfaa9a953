"""Hub-to-hub exchange: the sending spool, the importer's state, HTTPS push and pull.

The bots in ``intelmq_crossborder/bots/outputs/exchange`` and ``intelmq_crossborder/bots/collectors/exchange`` are thin
wrappers around the two classes here:

:class:`Spool` (sender side, one per recipient)
    Every event is appended as one JSON line to ``spool.jsonl`` and flushed to
    the operating system before the bot acknowledges it, so a stopped or killed
    bot loses nothing it acknowledged.  :meth:`Spool.seal` turns the spool into a
    signed bundle in the outbox.  Sealing is a small journal: the spool is
    renamed to ``sealing.jsonl``, the bundle is written to a temporary file and
    renamed into the outbox, then the sequence number is committed and
    ``sealing.jsonl`` removed.  :meth:`Spool.recover` (run at start) finishes an
    interrupted seal without reusing or skipping a sequence number, and cuts a
    half-written last line (that event was never acknowledged, IntelMQ delivers
    it again).

:class:`Importer` (receiver side)
    Verifies a bundle (signature, trust, recipient, hash, count), checks the
    sequence number against the per-sender state, hands the event lines out in
    chunks and records after every chunk how far it got.  Rejected bundles are
    moved to the quarantine folder with a ``.reason.json`` next to them.  A bundle
    whose id was already imported with the same data adds nothing.

:class:`Pusher` (sender side, optional)
    PUTs the outbox to the peer in sequence order; while the peer fails (slow,
    5xx, connection dropped) it backs off exponentially, up to a maximum, and
    does not contact the peer until the next attempt is due.  The bundles wait
    in the outbox, complete and signed; nothing is dumped.

State files are JSON, written atomically (temporary file, fsync, rename).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.core import inputs
__all__ = ["Spool", "Importer", "ImportResult", "push_outbox", "Pusher", "pull_bundles", "https_session"]

RECENT_IDS_KEPT = 1000
PULLED_NAMES_KEPT = 10000
MAX_LISTING_BYTES = 16 * 1024 * 1024
#: Names a pulled bundle may have: no path separators, no leading dot, no whitespace or control characters.
BUNDLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}" + re.escape(b.BUNDLE_SUFFIX))


class StateError(b.BundleError):
    """A state file of the exchange cannot be used (unreadable, not JSON, wrong shape)."""

    def __init__(self, path, message: str):
        super().__init__("state", f"{path}: {message}; repair or remove it deliberately")


def _load_json(path: Path, default, check: Callable[[dict], Optional[str]]):
    """A state file (``default`` if it does not exist); :class:`StateError` if it cannot be used.
    ``check(state)`` returns what is wrong with its shape, or None."""
    if not os.path.lexists(path):
        return default
    try:
        state = inputs.read_json(path, what="state file")
    except inputs.InputError as exc:
        raise StateError(exc.source, f"state file is not usable: {exc.reason}"
                                     + (f" (line {exc.line})" if exc.line else "")) from None
    problem = check(state) if isinstance(state, dict) else "top level: must be a JSON object"
    if problem:
        raise StateError(path, f"state file field {problem}")
    return state


def _is_int(value, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum


def _is_time(value) -> bool:
    return value is None or (type(value) in (int, float) and value >= 0)


def _spool_state_problem(state: dict) -> Optional[str]:
    if not _is_int(state.get("next_sequence", 1), 1):
        return "next_sequence: must be an integer >= 1"
    for name in ("spool_opened_at", "sealing_opened_at"):
        if not _is_time(state.get(name)):
            return f"{name}: must be a time in seconds or null"
    if not isinstance(state.get("last_bundle", ""), (str, type(None))):
        return "last_bundle: must be a file name"
    return None


def _import_state_problem(state: dict) -> Optional[str]:
    peers = state.setdefault("peers", {})
    if not isinstance(peers, dict):
        return "peers: must be an object of sender hub -> state"
    for hub, peer in peers.items():
        if not isinstance(peer, dict):
            return f"peers.{hub}: must be an object"
        if not _is_int(peer.setdefault("last_sequence", 0)):
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
            if not _is_int(progress.get(name, 0)):
                return f"in_progress.{name}: must be an integer >= 0"
    pulled = state.setdefault("pulled", [])
    if not (isinstance(pulled, list) and all(isinstance(n, str) for n in pulled)):
        return "pulled: must be a list of file names"
    return None


def _remove_temp_files(directory: Path) -> List[str]:
    removed = []
    for tmp in directory.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp.name)
        except OSError:
            pass
    return removed


# --- sender side --------------------------------------------------------------------------------

class Spool:
    """The open bundle of one sender→recipient pair (see module docstring)."""

    SPOOL = "spool.jsonl"
    SEALING = "sealing.jsonl"
    STATE = "state.json"

    def __init__(self, directory, outbox, sender: str, recipient: str, signing_key,
                 fsync_each: bool = False, compresslevel: int = 6, sent_dir=None,
                 logger: Optional[logging.Logger] = None):
        self.dir = Path(directory)
        self.outbox = Path(outbox)
        self.sent_dir = Path(sent_dir) if sent_dir else None
        self.sender, self.recipient = sender, recipient
        self._key = signing_key
        self.fsync_each = fsync_each
        self.compresslevel = compresslevel
        self.log = logger or logging.getLogger(__name__)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.state = _load_json(self.dir / self.STATE, {"next_sequence": 1}, _spool_state_problem)
        self.count = 0
        self.opened_at: Optional[float] = None
        self.last_line: Optional[bytes] = None
        self._fh = None

    # state
    def _save_state(self) -> None:
        b.atomic_write_json(self.dir / self.STATE, self.state)

    @property
    def next_sequence(self) -> int:
        return int(self.state.get("next_sequence", 1))

    def recover(self) -> List[Path]:
        """Clean up after a crash; returns bundles sealed while doing so."""
        for name in _remove_temp_files(self.outbox):
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

    @staticmethod
    def _repair_and_count(path: Path):
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

    def _open(self):
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

    def age(self, now: Optional[float] = None) -> float:
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
        self._save_state()
        os.replace(spool, self.dir / self.SEALING)
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
            window_start = b.dt.datetime.fromtimestamp(opened, b.dt.timezone.utc)
            writer = b.BundleWriter(self.outbox, self.sender, self.recipient, sequence, self._key,
                                    window_start=window_start, compresslevel=self.compresslevel)
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


# --- HTTPS --------------------------------------------------------------------------------------

def https_session(client_cert: Optional[str] = None, client_key: Optional[str] = None,
                  ca_bundle: Optional[str] = None):
    """A requests session for mutual TLS: our client certificate, the peer's CA."""
    import requests

    session = requests.Session()
    if client_cert:
        session.cert = (client_cert, client_key) if client_key else client_cert
    if ca_bundle:
        session.verify = ca_bundle
    return session


def _tls(session) -> dict:
    # Passed on every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the
    # environment override a session's own ``verify`` (psf/requests#3829), which would
    # silently replace the peer CA we were configured with.
    return {"verify": session.verify, "cert": session.cert}


def push_outbox(outbox, url: str, session, sent_dir=None, timeout: float = 60.0,
                logger: Optional[logging.Logger] = None) -> List[str]:
    """PUT every bundle of ``outbox`` (in name order = sequence order) to ``url``/<name>.

    A pushed bundle is moved to ``sent_dir`` (or deleted).  The first failure stops
    the run so that the receiver never sees a later sequence number before an
    earlier one; the rest stays in the outbox for the next attempt.
    """
    log = logger or logging.getLogger(__name__)
    pushed, failure = _push_round(outbox, url, session, sent_dir, timeout, log)
    if failure is not None:
        log.warning("Push of %s to %s failed, kept in the outbox for the next attempt: %s.",
                    failure[0], url.rstrip("/"), failure[1])
    return pushed


def _push_round(outbox, url: str, session, sent_dir, timeout: float, log) -> tuple:
    """One push round: ``(names pushed, None)`` or, at the first failure, ``(names pushed, (name, error))``."""
    import requests

    pushed = []
    base = url.rstrip("/")
    for path in sorted(Path(outbox).glob("*" + b.BUNDLE_SUFFIX)):
        try:
            with open(path, "rb") as fh:
                # stream=True: only the status line and headers are read (each read bounded by the
                # timeout); the body is never read, so a peer trickling a response cannot hold us.
                response = session.put(f"{base}/{path.name}", data=fh, timeout=timeout, stream=True,
                                       headers={"Content-Type": "application/x-tar"}, **_tls(session))
            try:
                response.raise_for_status()
            finally:
                response.close()
        except (requests.RequestException, OSError) as exc:
            return pushed, (path.name, exc)
        if sent_dir:
            Path(sent_dir).mkdir(parents=True, exist_ok=True)
            os.replace(path, Path(sent_dir) / path.name)
        else:
            path.unlink()
        pushed.append(path.name)
        log.info("Pushed %s to %s.", path.name, base)
    return pushed, None


class Pusher:
    """Push an outbox to one peer, backing off (bounded, exponential) while the peer fails.

    :meth:`push` runs one round of :func:`push_outbox` when it is due: bundles in sequence
    order, the first failure stops the round.  A round that leaves bundles behind makes
    the next one wait ``backoff`` (:class:`intelmq_crossborder.core.retry.Backoff`: initial
    wait, doubling, capped); the warning names the bundle, the URL, the error and the
    time of the next attempt.  While backing off, :meth:`due` is false and :meth:`push`
    returns at once without contacting the peer.  A round that empties the outbox resets
    the backoff.  Rounds never overlap: a second caller returns at once.  The bundles
    themselves are complete, signed files; a failed PUT leaves them untouched in the outbox.

    ``session_factory()`` gives a fresh ``requests`` session for each round (closed after it).
    """

    def __init__(self, outbox, url: str, session_factory: Callable, backoff, sent_dir=None,
                 timeout: float = 60.0, logger: Optional[logging.Logger] = None,
                 wall_clock: Callable[[], float] = time.time):
        import threading

        self.outbox = Path(outbox)
        self.url = url.rstrip("/")
        self.session_factory = session_factory
        self.backoff = backoff
        self.sent_dir = sent_dir
        self.timeout = timeout
        self.log = logger or logging.getLogger(__name__)
        self.wall_clock = wall_clock
        self.pending = True          # bundles may be waiting (at start: whatever the last run left)
        self._round = threading.Lock()

    def waiting(self) -> List[Path]:
        return sorted(self.outbox.glob("*" + b.BUNDLE_SUFFIX))

    def mark_pending(self) -> None:
        """A bundle was sealed: push it at the next due round."""
        self.pending = True

    def due(self) -> bool:
        return self.pending and self.backoff.ready()

    def push(self) -> Optional[List[str]]:
        """One round if due; the names pushed, or None when no round ran (backing off, nothing
        pending, or another round in progress)."""
        if not self.due() or not self._round.acquire(blocking=False):
            return None
        try:
            session = self.session_factory()
            try:
                pushed, failure = _push_round(self.outbox, self.url, session, self.sent_dir, self.timeout, self.log)
            finally:
                session.close()
            if failure is None:
                if self.backoff.failures:
                    self.log.info("Push to %s works again after %d failed attempt(s).", self.url,
                                  self.backoff.failures)
                self.backoff.succeeded()
                self.pending = bool(self.waiting())      # sealed during the round: next round
                return pushed
            wait = self.backoff.failed()
            name, exc = failure
            at = b.dt.datetime.fromtimestamp(self.wall_clock() + wait, b.dt.timezone.utc)
            self.log.warning("Push of %s to %s failed, kept in the outbox for the next attempt (%d bundle(s) "
                             "waiting, signed and complete): %s. Failure %d in a row; next attempt in %g s, "
                             "at %s.", name, self.url, len(self.waiting()), _one_line(exc),
                             self.backoff.failures, wait, at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.pending = True
            return pushed
        finally:
            self._round.release()


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _listing_names(doc) -> List[str]:
    """File names from a JSON directory listing: nginx ``autoindex_format json`` or a list of names.
    Only names that are safe bundle file names (:data:`BUNDLE_NAME_RE`) are returned."""
    names = []
    if isinstance(doc, dict):
        doc = doc.get("bundles", doc.get("files", []))
    if not isinstance(doc, list):
        raise ValueError("listing is neither a JSON list nor an object with 'bundles'")
    for item in doc:
        if isinstance(item, dict):
            if item.get("type", "file") != "file":
                continue
            item = item.get("name")
        if isinstance(item, str) and BUNDLE_NAME_RE.fullmatch(item):
            names.append(item)
    return names


def _read_listing(response, source: str):
    """The JSON body of a listing response, at most :data:`MAX_LISTING_BYTES`; InputError otherwise."""
    body = bytearray()
    for chunk in response.iter_content(chunk_size=1 << 16):
        body += chunk
        if len(body) > MAX_LISTING_BYTES:
            raise inputs.InputError(source, f"listing larger than {MAX_LISTING_BYTES} bytes")
    return inputs.loads_json(bytes(body), source)


def pull_bundles(url: str, inbox, session, already: Iterable[str], timeout: float = 60.0,
                 logger: Optional[logging.Logger] = None) -> List[str]:
    """Download new ``*.xbundle`` files listed at ``url`` into ``inbox`` (temporary file, then rename).

    A listing that is not JSON (or too large, or with duplicate keys) raises
    :class:`intelmq_crossborder.core.inputs.InputError` (a ValueError); listed names that are
    not safe bundle file names are ignored."""
    log = logger or logging.getLogger(__name__)
    inbox = Path(inbox)
    base = url.rstrip("/")
    with session.get(base + "/", timeout=timeout, stream=True, **_tls(session)) as response:
        response.raise_for_status()
        names = _listing_names(_read_listing(response, f"listing {base}/"))
    skip = set(already)
    fetched = []
    for name in sorted(names):
        if name in skip or (inbox / name).exists():
            continue
        tmp = inbox / f".{name}.tmp"
        with session.get(f"{base}/{name}", timeout=timeout, stream=True, **_tls(session)) as resp:
            resp.raise_for_status()
            with open(tmp, "wb") as out:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, inbox / name)
        fetched.append(name)
        log.info("Downloaded %s from %s.", name, base)
    return fetched


# --- receiver side -------------------------------------------------------------------------------

@dataclass
class ImportResult:
    path: Path
    status: str                 # imported | resumed | duplicate | rejected
    manifest: Optional[b.Manifest] = None
    lines_sent: int = 0
    reason: str = ""
    reason_code: str = ""


class Importer:
    """Check and import bundles addressed to ``hub_id`` (see module docstring).

    ``emit(lines, manifest, first_index, chunk_number)`` is called once per chunk
    of at most ``chunk_lines`` event lines (bytes, without newline); the state is
    committed after it returns.  If ``emit`` raises, nothing of that chunk is
    recorded and the next run resumes with it.
    """

    STATE = "import-state.json"

    def __init__(self, hub_id: str, trust: b.TrustStore, state_dir, quarantine_dir, archive_dir=None,
                 chunk_lines: int = 1000, accept_first_sequence: bool = False,
                 logger: Optional[logging.Logger] = None):
        self.hub_id = hub_id
        self.trust = trust
        self.state_dir = Path(state_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.archive_dir = Path(archive_dir) if archive_dir else None
        self.chunk_lines = max(1, int(chunk_lines))
        self.accept_first_sequence = accept_first_sequence
        self.log = logger or logging.getLogger(__name__)
        for folder in filter(None, (self.state_dir, self.quarantine_dir, self.archive_dir)):
            folder.mkdir(parents=True, exist_ok=True)
        self.state = _load_json(self.state_dir / self.STATE, {"peers": {}, "in_progress": None, "pulled": []},
                                _import_state_problem)

    def save(self) -> None:
        b.atomic_write_json(self.state_dir / self.STATE, self.state)

    def remember_pulled(self, names: Iterable[str]) -> None:
        pulled = self.state.setdefault("pulled", [])
        pulled.extend(names)
        del pulled[:-PULLED_NAMES_KEPT]
        self.save()

    # --- helpers
    def quarantine(self, path: Path, error: b.BundleError, manifest: Optional[b.Manifest] = None) -> ImportResult:
        target = self.quarantine_dir / path.name
        if target.exists():
            target = self.quarantine_dir / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
        os.replace(path, target) if _same_fs(path, self.quarantine_dir) else shutil.move(str(path), str(target))
        info = {"file": path.name, "reason": error.reason, "message": str(error),
                "quarantined_at": b.isoformat(b.utcnow())}
        if manifest:
            info["manifest"] = manifest.to_dict()
        b.atomic_write_json(target.with_name(target.name + ".reason.json"), info)
        self.log.error("Rejected bundle %s (%s): %s. Moved to quarantine %s.",
                       path.name, error.reason, str(error).rstrip("."), target)
        return ImportResult(path, "rejected", manifest, reason=str(error), reason_code=error.reason)

    def _finish_file(self, path: Path) -> None:
        if self.archive_dir:
            target = self.archive_dir / path.name
            os.replace(path, target) if _same_fs(path, self.archive_dir) else shutil.move(str(path), str(target))
        else:
            path.unlink()

    def pending(self, inbox) -> List[Path]:
        """Bundle files in the inbox (temporary files of transfers in progress are skipped)."""
        return sorted(p for p in Path(inbox).glob("*" + b.BUNDLE_SUFFIX) if not p.name.startswith("."))

    def run(self, inbox, emit: Callable) -> List[ImportResult]:
        """Import everything in ``inbox``: per sender in sequence order; bad bundles to quarantine."""
        results, ready = [], []
        for path in self.pending(inbox):
            try:
                with b.open_bundle(path, self.trust, self.hub_id) as opened:
                    ready.append((opened.manifest.sender, opened.manifest.sequence, path))
            except b.BundleError as exc:
                results.append(self.quarantine(path, exc))
        for _sender, _seq, path in sorted(ready):
            results.append(self.import_bundle(path, emit))
        return results

    def import_bundle(self, path: Path, emit: Callable) -> ImportResult:
        path = Path(path)
        try:
            opened = b.open_bundle(path, self.trust, self.hub_id)
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
                                             "data_sha256": m.data_sha256, "file": path.name,
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
        self._finish_file(path)
        self.log.info("Imported %s: %d events from %s (sequence %d).", path.name, sent, m.sender, m.sequence)
        return ImportResult(path, "resumed" if resuming else "imported", m, sent)

    def _emit(self, emit, batch, manifest, first, chunk_no) -> int:
        emit(batch, manifest, first, chunk_no)
        progress = self.state["in_progress"]
        progress["next_line"] = first + len(batch)
        progress["chunk"] = chunk_no + 1
        self.save()
        return len(batch)

    def _reject(self, path, code, message, manifest, opened) -> ImportResult:
        opened.close()
        return self.quarantine(path, b.BundleError(code, f"{path.name}: {message}"), manifest)


def _same_fs(path: Path, folder: Path) -> bool:
    try:
        return os.stat(path).st_dev == os.stat(folder).st_dev
    except OSError:
        return False
