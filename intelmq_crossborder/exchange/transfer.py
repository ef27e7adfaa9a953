"""Hub-to-hub transfer over HTTPS with mutual TLS: push an outbox, pull into an inbox.

:class:`Pusher` (sender side, optional)
    PUTs the outbox to the peer in sequence order; while the peer fails (slow, 5xx,
    connection dropped) it backs off exponentially, up to a maximum, and does not contact
    the peer until the next attempt is due.  The bundles wait in the outbox, complete and
    signed; nothing is dumped.

:func:`pull_bundles` (receiver side, optional)
    Downloads the new bundles a peer lists (JSON listing) into the inbox, each to a temporary
    file first and then renamed, for :class:`intelmq_crossborder.exchange.importer.Importer`.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.files import move_durably
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats import bundle as b

__all__ = ["push_outbox", "Pusher", "pull_bundles", "https_session", "BUNDLE_NAME_RE"]

PathLike = Union[str, Path]
MAX_LISTING_BYTES = 16 * 1024 * 1024
#: Names a pulled bundle may have: no path separators, no leading dot, no whitespace or control characters.
BUNDLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}" + re.escape(b.BUNDLE_SUFFIX))


def https_session(client_cert: Optional[str] = None, client_key: Optional[str] = None,
                  ca_bundle: Optional[str] = None) -> Any:
    """A requests session for mutual TLS: our client certificate, the peer's CA."""
    import requests

    session = requests.Session()
    if client_cert:
        session.cert = (client_cert, client_key) if client_key else client_cert
    if ca_bundle:
        session.verify = ca_bundle
    return session


def _tls(session: Any) -> dict:
    # Passed on every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the
    # environment override a session's own ``verify`` (psf/requests#3829), which would
    # silently replace the peer CA we were configured with.
    return {"verify": session.verify, "cert": session.cert}


def push_outbox(outbox: PathLike, url: str, session: Any, sent_dir: Optional[PathLike] = None,
                timeout: float = 60.0, logger: Optional[logging.Logger] = None) -> List[str]:
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


def _push_round(outbox: PathLike, url: str, session: Any, sent_dir: Optional[PathLike], timeout: float,
                log: logging.Logger) -> Tuple[List[str], Optional[Tuple[str, BaseException]]]:
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
            move_durably(path, Path(sent_dir) / path.name)
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

    def __init__(self, outbox: PathLike, url: str, session_factory: Callable[[], Any], backoff: Backoff,
                 sent_dir: Optional[PathLike] = None, timeout: float = 60.0, logger: Optional[logging.Logger] = None,
                 wall_clock: Callable[[], float] = time.time):
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
        """The bundles in the outbox, in sequence order."""
        return sorted(self.outbox.glob("*" + b.BUNDLE_SUFFIX))

    def mark_pending(self) -> None:
        """A bundle was sealed: push it at the next due round."""
        self.pending = True

    def due(self) -> bool:
        """A round would run now: bundles may be waiting and no backoff is in force."""
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
            at = dt.datetime.fromtimestamp(self.wall_clock() + wait, dt.timezone.utc)
            self.log.warning("Push of %s to %s failed, kept in the outbox for the next attempt (%d bundle(s) "
                             "waiting, signed and complete): %s. Failure %d in a row; next attempt in %g s, "
                             "at %s.", name, self.url, len(self.waiting()), _one_line(exc),
                             self.backoff.failures, wait, at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.pending = True
            return pushed
        finally:
            self._round.release()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _listing_names(doc: Any) -> List[str]:
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


def _read_listing(response: Any, source: str) -> Any:
    """The JSON body of a listing response, at most :data:`MAX_LISTING_BYTES`; InputError otherwise."""
    body = bytearray()
    for chunk in response.iter_content(chunk_size=1 << 16):
        body += chunk
        if len(body) > MAX_LISTING_BYTES:
            raise inputs.InputError(source, f"listing larger than {MAX_LISTING_BYTES} bytes")
    return inputs.loads_json(bytes(body), source)


def pull_bundles(url: str, inbox: PathLike, session: Any, already: Iterable[str], timeout: float = 60.0,
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
        move_durably(tmp, inbox / name)
        fetched.append(name)
        log.info("Downloaded %s from %s.", name, base)
    return fetched
