"""CSAF 2.0 distribution: discovery, ROLIE and directory feeds, verification, run state.

Pure library used by the CSAF collector bot (and the CSAF output for the
provider layout it writes).  Everything takes a ``requests.Session`` (so
authentication, client certificates and proxies are the caller's session
settings) and a logger.

Real feeds deviate from the specification; where that is harmless this module
accepts the deviation and logs it (``deviation`` lines at INFO):

- ROLIE links with ``"ref"`` instead of ``"rel"`` (CISA, CPANSA feeds);
- ``changes.csv`` unquoted, unsorted, or with paths relative to a repository
  root instead of the directory (CISA);
- timestamps without a timezone (read as UTC; CPANSA).
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional
from urllib.parse import urljoin, urlsplit

from intelmq_crossborder.core import files, inputs, tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats.csaf.document import normalise_datetime
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = [
    "auth_hosts_for", "FetchError", "VerificationError", "Distribution", "Entry", "Fetcher", "discover",
    "distributions", "rolie_entries", "directory_entries", "parse_changes_csv", "verify_hash",
    "RunState", "OpenPGPVerifier", "parse_hash_file",
]

WELL_KNOWN = "/.well-known/csaf/provider-metadata.json"
SECURITY_TXT = "/.well-known/security.txt"


class FetchError(CrossBorderError):
    """A URL that could not be fetched (network error or HTTP status >= 400).

    ``transient``: worth another attempt (connection refused or dropped, timeout, a
    download cut or stalled, HTTP 5xx or 429); a 4xx, an oversized or endlessly
    trickled file is not retried."""

    def __init__(self, url: str, reason: str, status: Optional[int] = None, transient: bool = False):
        self.url, self.reason, self.status, self.transient = url, reason, status, transient
        super().__init__(f"{url}: {reason}")


class VerificationError(CrossBorderError):
    """A downloaded advisory whose hash or signature does not check out."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(f"{url}: {reason}")


class Fetcher:
    """GET with one ``requests.Session``; never logs headers (they may carry secrets).

    ``auth_headers`` (a secret token, say) are sent only to ``auth_hosts``: a feed
    may list advisories or keys on other hosts, which must not receive the token.

    Every request is bounded: ``timeout`` per connect/read, ``max_seconds`` for a whole
    download (default 10 x timeout).  A transient failure (see :class:`FetchError`) is
    tried ``attempts`` times in all, waiting ``retry_backoff`` seconds, then twice that,
    ... (at most ``max_backoff``) between attempts, each retry logged with the URL.  The
    session's own transport retries should be off (the collector switches them off), or
    the attempts multiply.
    """

    def __init__(self, session, timeout: float = 30.0, max_bytes: int = 50 * 1024 * 1024,
                 auth_headers: Optional[dict] = None, auth_hosts: Iterable[str] = (),
                 max_seconds: Optional[float] = None, attempts: int = 1, retry_backoff: float = 1.0,
                 max_backoff: float = 60.0, logger: Optional[logging.Logger] = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.session = session
        self.timeout = timeout
        self.max_seconds = max_seconds      # total time for one download; default 10 x timeout
        self.max_bytes = max_bytes
        self.auth_headers = dict(auth_headers or {})
        self.auth_hosts = {h.lower() for h in auth_hosts}
        self.attempts = max(1, int(attempts))
        self.backoff = Backoff(retry_backoff, max(float(max_backoff), float(retry_backoff)))
        self.log = logger or logging.getLogger(__name__)
        self.sleep = sleep

    def headers_for(self, url: str) -> dict:
        host = (urlsplit(url).hostname or "").lower()
        return self.auth_headers if self.auth_headers and host in self.auth_hosts else {}

    def get(self, url: str) -> bytes:
        """The body of ``url``; :class:`FetchError` naming the URL after the last attempt."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._get_once(url)
            except FetchError as exc:
                if not exc.transient or attempt == self.attempts:
                    if attempt > 1:
                        raise FetchError(url, f"{exc.reason}, {attempt} attempts", exc.status,
                                         exc.transient) from None
                    raise
                wait = self.backoff.delay(attempt)
                self.log.warning("GET %s: %s; retry %d of %d in %.2f s.", url, exc.reason,
                                 attempt, self.attempts - 1, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(self, url: str) -> bytes:
        import requests
        import urllib3

        try:
            response = self.session.get(url, timeout=self.timeout, stream=True, headers=self.headers_for(url))
        except requests.RequestException as exc:
            raise FetchError(url, f"request failed ({type(exc).__name__})", transient=True) from None
        try:
            if response.status_code >= 400:
                raise FetchError(url, f"HTTP {response.status_code}", response.status_code,
                                 transient=response.status_code >= 500 or response.status_code == 429)
            # Read with a total deadline, not only the per-read timeout: a peer that trickles
            # one byte per second would otherwise hold the collector for days.
            deadline = time.monotonic() + (self.max_seconds or self.timeout * 10)
            chunks, size = [], 0
            while size <= self.max_bytes:
                chunk = response.raw.read1(1 << 16, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise FetchError(url, f"download slower than the {self.max_seconds or self.timeout * 10:g} s "
                                          "allowed in total")
            body = b"".join(chunks)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3's own errors come out of raw reads: a peer that stops sending in the middle
            # of the body (ReadTimeoutError) or closes the connection early (ProtocolError).
            raise FetchError(url, f"download interrupted ({type(exc).__name__})", transient=True) from None
        finally:
            response.close()
        if len(body) > self.max_bytes:
            raise FetchError(url, f"larger than {self.max_bytes} bytes")
        return body

    def get_json(self, url: str):
        """The JSON document at ``url``, read as hostile input (:func:`inputs.loads_json`)."""
        body = self.get(url)
        try:
            return inputs.loads_json(body, url)
        except inputs.InputError as exc:
            raise FetchError(url, f"not JSON the hub accepts ({_where(exc)}{exc.reason})") from None


# --- discovery -----------------------------------------------------------------

def auth_hosts_for(start: str) -> set:
    """The hosts an authentication header may go to for a ``csaf_source``: its own host; for a
    domain, the domain and ``csaf.data.security.<domain>``."""
    if "://" in start:
        return {(urlsplit(start).hostname or "").lower()}
    domain = start.strip().strip("/").split(":")[0].lower()
    return {domain, f"csaf.data.security.{domain}"}


def _is_aggregator(doc) -> bool:
    return isinstance(doc, dict) and ("aggregator" in doc or "csaf_providers" in doc)


def discover(start: str, fetcher: Fetcher, log: logging.Logger, scheme: str = "https") -> list:
    """Provider metadata documents reachable from ``start``: ``[(url, metadata dict)]``.

    ``start`` is a provider-metadata.json URL, an aggregator.json URL, or a domain
    (tried as ``/.well-known/csaf/provider-metadata.json``, then ``security.txt``'s
    ``CSAF:`` lines, then ``csaf.data.security.<domain>``).  Providers of an
    aggregator that cannot be read are logged and skipped.
    """
    if "://" in start:
        doc = fetcher.get_json(start)
        if _is_aggregator(doc):
            return _aggregator_providers(start, doc, fetcher, log)
        return [(start, doc)]
    domain = start.strip().strip("/")
    tried = []
    for url in (f"{scheme}://{domain}{WELL_KNOWN}",):
        try:
            return [(url, fetcher.get_json(url))]
        except FetchError as exc:
            tried.append(str(exc))
    try:
        text = fetcher.get(f"{scheme}://{domain}{SECURITY_TXT}").decode("utf-8", "replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "csaf" and value.strip():
                url = value.strip()
                try:
                    return [(url, fetcher.get_json(url))]
                except FetchError as exc:
                    tried.append(str(exc))
    except FetchError as exc:
        tried.append(str(exc))
    url = f"{scheme}://csaf.data.security.{domain}{WELL_KNOWN}"
    try:
        return [(url, fetcher.get_json(url))]
    except FetchError as exc:
        tried.append(str(exc))
    raise FetchError(domain, "no provider-metadata.json found (tried: " + "; ".join(tried) + ")")


def _aggregator_providers(url: str, doc: dict, fetcher: Fetcher, log) -> list:
    out = []
    for key in ("csaf_providers", "csaf_publishers"):
        for provider in _list(doc.get(key)):
            metadata = provider.get("metadata") if isinstance(provider, dict) else None
            meta_url = metadata.get("url") if isinstance(metadata, dict) else None
            if not isinstance(meta_url, str) or not meta_url:
                log.info("Aggregator %s: entry in %s without metadata.url, skipped.", url, key)
                continue
            try:
                out.append((meta_url, fetcher.get_json(meta_url)))
            except FetchError as exc:
                log.warning("Aggregator %s: provider metadata %s not readable: %s.", url, meta_url, exc.reason)
    return out


@dataclass(frozen=True)
class Distribution:
    """One place advisories are listed: a ROLIE feed or a directory."""

    kind: str                     # "rolie" or "directory"
    url: str
    tlp_label: Optional[str] = None   # the feed's label as written (ROLIE), None if unknown


def distributions(metadata_url: str, metadata: dict, log) -> list:
    """The distributions of a provider; ROLIE feeds are preferred over directories."""
    rolie, directories = [], []
    if not isinstance(metadata, dict):
        log.warning("Provider metadata %s is a JSON %s, not an object: skipped.", metadata_url,
                    type(metadata).__name__)
        return []
    for dist in _list(metadata.get("distributions")):
        if not isinstance(dist, dict):
            continue
        rolie_block = dist.get("rolie") if isinstance(dist.get("rolie"), dict) else {}
        for feed in _list(rolie_block.get("feeds")):
            if isinstance(feed, dict) and isinstance(feed.get("url"), str) and feed["url"]:
                label = feed.get("tlp_label")
                rolie.append(Distribution("rolie", urljoin(metadata_url, feed["url"]),
                                          label if isinstance(label, str) else None))
        if isinstance(dist.get("directory_url"), str) and dist["directory_url"]:
            url = urljoin(metadata_url, dist["directory_url"])
            directories.append(Distribution("directory", url if url.endswith("/") else url + "/"))
    if rolie and directories:
        log.info("Provider %s has ROLIE feeds and directories: using the %d ROLIE feed(s).",
                 metadata_url, len(rolie))
        return rolie
    return rolie or directories


# --- entries --------------------------------------------------------------------------

@dataclass
class Entry:
    """An advisory listed by a distribution."""

    url: str
    updated: Optional[str]                      # ISO UTC, None if the listing has no timestamp
    hash_urls: list = field(default_factory=list)   # [(algorithm, url)], strongest first
    signature_url: Optional[str] = None
    tlp_label: Optional[str] = None


def _timestamp(value, where: str, log, notes: set) -> Optional[str]:
    iso, assumed = normalise_datetime(value)
    if assumed and where not in notes:
        notes.add(where)
        log.info("Deviation in %s: timestamps without timezone, read as UTC.", where)
    return iso


def rolie_entries(feed_url: str, feed: dict, log, tlp_label: Optional[str] = None) -> list:
    """Entries of a ROLIE feed document, tolerant of ``"ref"`` for ``"rel"``."""
    entries = []
    notes: set = set()
    ref_count = 0
    body = feed.get("feed") if isinstance(feed, dict) else None
    for item in _list(body.get("entry") if isinstance(body, dict) else None):
        if not isinstance(item, dict):
            continue
        links = _list(item.get("link"))
        content = item.get("content")
        url = content.get("src") if isinstance(content, dict) else None
        url = url if isinstance(url, str) else None
        hashes, signature = [], None
        for link in links:
            if not isinstance(link, dict):
                continue
            rel = link.get("rel")
            if rel is None and "ref" in link:
                rel = link["ref"]
                ref_count += 1
            href = link.get("href")
            if not isinstance(href, str) or not href:
                continue
            href = urljoin(feed_url, href)
            if rel == "self" and not url:
                url = href
            elif rel == "hash":
                algo = "sha512" if href.endswith(".sha512") else "sha256" if href.endswith(".sha256") else None
                if algo:
                    hashes.append((algo, href))
            elif rel == "signature":
                signature = href
        if not url:
            log.info("Deviation in %s: entry %r without content.src or self link, skipped.",
                     feed_url, item.get("id"))
            continue
        hashes.sort(key=lambda h: h[0] != "sha512")
        updated = _timestamp(item.get("updated") or item.get("published"), feed_url, log, notes)
        entries.append(Entry(urljoin(feed_url, url), updated, hashes, signature, tlp_label))
    if ref_count:
        log.info("Deviation in %s: %d link(s) use \"ref\" instead of \"rel\", read as \"rel\".",
                 feed_url, ref_count)
    return entries


def parse_changes_csv(text: str, where: str, log) -> list:
    """``[(path, iso timestamp)]`` of a changes.csv, newest first, tolerant of real-feed deviations."""
    rows = []
    notes: set = set()
    quoted = '"' in text.split("\n", 1)[0]
    for record in csv.reader(io.StringIO(text)):
        if not record or not record[0].strip():
            continue
        if len(record) < 2:
            log.info("Deviation in %s: line without timestamp %r, skipped.", where, record[0])
            continue
        iso = _timestamp(record[1].strip(), where, log, notes)
        if iso is None:
            log.info("Deviation in %s: unreadable timestamp %r for %s, skipped.", where, record[1], record[0])
            continue
        rows.append((record[0].strip(), iso))
    if rows and not quoted:
        log.info("Deviation in %s: fields are not quoted.", where)
    ordered = sorted(rows, key=lambda r: r[1], reverse=True)
    if ordered != rows:
        log.info("Deviation in %s: not sorted newest first, sorted.", where)
    return ordered


def directory_entries(directory_url: str, fetcher: Fetcher, log, tlp_label: Optional[str] = None) -> list:
    """Entries of a directory distribution from its changes.csv (index.txt if there is none)."""
    base = directory_url if directory_url.endswith("/") else directory_url + "/"
    base_path = urlsplit(base).path.lstrip("/")
    try:
        rows = parse_changes_csv(fetcher.get(base + "changes.csv").decode("utf-8", "replace"),
                                 base + "changes.csv", log)
    except FetchError as exc:
        log.info("Directory %s: changes.csv not readable (%s), reading index.txt.", base, exc.reason)
        text = fetcher.get(base + "index.txt").decode("utf-8", "replace")
        rows = [(line.strip(), None) for line in text.splitlines() if line.strip()]
    entries = []
    stripped = 0
    for path, updated in rows:
        rel = path.lstrip("/")
        # CISA lists repo-relative paths ("csaf_files/IT/white/2024/x.json") in a directory
        # whose URL already ends in csaf_files/IT/white/: strip the repeated prefix.
        for n in range(len(base_path.rstrip("/").split("/")), 0, -1):
            suffix = "/".join(base_path.rstrip("/").split("/")[-n:]) + "/"
            if suffix != "/" and rel.startswith(suffix):
                rel = rel[len(suffix):]
                stripped += 1
                break
        url = urljoin(base, rel)
        entries.append(Entry(url, updated, [("sha512", url + ".sha512"), ("sha256", url + ".sha256")],
                             url + ".asc", tlp_label))
    if stripped:
        log.info("Deviation in %s: %d path(s) repeat the directory path, read relative to it.", base, stripped)
    return entries


# --- verification ------------------------------------------------------------------

def parse_hash_file(text: str) -> str:
    """The hex digest of a ``sha256sum``/``sha512sum`` style line (``<hex>  <name>``)."""
    token = text.strip().split()[0] if text.strip() else ""
    return token.lower()


def verify_hash(entry: Entry, body: bytes, fetcher: Fetcher, require: bool = True) -> Optional[str]:
    """Check the first hash file that exists; returns the algorithm checked (None if none and not required).

    Raises :class:`VerificationError` on a mismatch, or when no hash file can be read and ``require``.
    """
    missing = []
    for algo, url in entry.hash_urls:
        try:
            expected = parse_hash_file(fetcher.get(url).decode("ascii", "replace"))
        except FetchError as exc:
            missing.append(f"{url} ({exc.reason})")
            continue
        actual = hashlib.new(algo, body).hexdigest()
        if expected != actual:
            raise VerificationError(entry.url, f"{algo} mismatch: {url} says {expected[:16]}..., "
                                               f"the file hashes to {actual[:16]}...")
        return algo
    if require:
        raise VerificationError(entry.url, "no hash file readable: " + ("; ".join(missing) or "none listed"))
    return None


class OpenPGPVerifier:
    """Detached OpenPGP signatures checked with GnuPG (python-gnupg) in a private keyring.

    Keys come from the provider's ``public_openpgp_keys`` (fetched, then checked
    against the listed fingerprint) or from local files.  A signature is good
    only if it is valid and made by one of the imported fingerprints.
    """

    def __init__(self, gpg_binary: str = "gpg", home: Optional[str] = None):
        import gnupg

        self._tmp = None
        if home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="csaf-gpg-")
            home = self._tmp.name
        os.chmod(home, 0o700)
        self.gpg = gnupg.GPG(gpgbinary=gpg_binary, gnupghome=home)
        self.fingerprints: set = set()

    def import_key(self, armored: bytes, expected_fingerprint: Optional[str] = None) -> list:
        result = self.gpg.import_keys(armored.decode("ascii", "replace") if isinstance(armored, bytes) else armored)
        fprs = [f.upper() for f in (result.fingerprints or [])]
        if expected_fingerprint:
            want = expected_fingerprint.replace(" ", "").upper()
            if want not in fprs:
                raise VerificationError("(key)", f"key fingerprint(s) {fprs} do not match the listed {want}")
            fprs = [want]
        self.fingerprints.update(fprs)
        return fprs

    def import_provider_keys(self, metadata: dict, fetcher: Fetcher, log, base_url: str = "") -> int:
        count = 0
        for key in metadata.get("public_openpgp_keys", []) or []:
            url = key.get("url")
            if not url:
                continue
            url = urljoin(base_url, url)
            try:
                self.import_key(fetcher.get(url), key.get("fingerprint"))
                count += 1
            except (FetchError, VerificationError) as exc:
                log.warning("OpenPGP key %s not imported: %s.", url, exc)
        return count

    def verify(self, url: str, body: bytes, signature: bytes) -> str:
        """The signer's fingerprint; raises :class:`VerificationError` if the signature is not good."""
        with tempfile.NamedTemporaryFile(suffix=".asc", delete=False) as sig:
            sig.write(signature)
            sig_path = sig.name
        try:
            verified = self.gpg.verify_data(sig_path, body)
        finally:
            os.unlink(sig_path)
        fpr = (verified.pubkey_fingerprint or verified.fingerprint or "").upper()
        if not verified.valid:
            raise VerificationError(url, f"OpenPGP signature not valid ({verified.status or 'no status'})")
        if fpr not in self.fingerprints and (verified.fingerprint or "").upper() not in self.fingerprints:
            raise VerificationError(url, f"OpenPGP signature by {fpr}, not a key of the provider")
        return fpr

    def sign(self, body: bytes, keyid: Optional[str] = None, passphrase: Optional[str] = None) -> bytes:
        """A detached ASCII-armoured signature (for the CSAF output)."""
        signed = self.gpg.sign(body, keyid=keyid, passphrase=passphrase, detach=True, clearsign=False)
        if not signed.data:
            raise VerificationError("(signing)", f"gpg could not sign ({signed.status or 'no status'})")
        return signed.data

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- state ------------------------------------------------------------------------

class RunState:
    """What was already delivered, per distribution: ``{dist_url: {advisory_url: updated}}``.

    Saved atomically after every delivered advisory, so a run that is interrupted
    resumes where it stopped; a failed advisory is not recorded and is tried again
    on the next run.
    """

    VERSION = 1

    def __init__(self, path: Optional[str]):
        self.path = path
        self.data: dict = {"version": self.VERSION, "distributions": {}}
        if path and os.path.exists(path):
            try:
                loaded = inputs.read_json(path, what="state file")
            except inputs.InputError as exc:
                raise ValueError(f"CSAF collector state {exc}; move it away to start over") from None
            if isinstance(loaded, dict) and loaded.get("version") == self.VERSION \
                    and isinstance(loaded.get("distributions"), dict) \
                    and all(isinstance(v, dict) for v in loaded["distributions"].values()):
                self.data = loaded

    def seen(self, dist_url: str) -> dict:
        return self.data["distributions"].setdefault(dist_url, {})

    def is_new(self, dist_url: str, entry: Entry) -> bool:
        seen = self.seen(dist_url)
        return entry.url not in seen or (entry.updated is not None and seen[entry.url] != entry.updated)

    def mark(self, dist_url: str, entry: Entry) -> None:
        self.seen(dist_url)[entry.url] = entry.updated or ""
        self.save()

    def prune(self, dist_url: str, listed: Iterable[str]) -> None:
        listed = set(listed)
        seen = self.seen(dist_url)
        for url in [u for u in seen if u not in listed]:
            del seen[url]
        self.save()

    def save(self) -> None:
        if not self.path:
            return
        files.atomic_write(self.path, json.dumps(self.data, sort_keys=True).encode("utf-8"))


def _list(value) -> list:
    """A JSON list of a distribution document, or nothing (a provider's other shapes are skipped)."""
    return value if isinstance(value, list) else []


def _where(exc: "inputs.InputError") -> str:
    return (f"line {exc.line}: " if exc.line is not None else "") + (f"field {exc.field}: " if exc.field else "")


def feed_level(label: Optional[str]) -> Optional[tlp.Level]:
    """The TLP level of a ROLIE feed's ``tlp_label`` (WHITE/GREEN/AMBER/RED, 2.1 labels too); UNLABELED: None."""
    if not label or str(label).strip().upper() == "UNLABELED":
        return None
    return tlp.parse_csaf(label, "2.0", "ROLIE feed tlp_label").level


def older_than(updated: Optional[str], days: int) -> bool:
    if not updated or days <= 0:
        return False
    when = _dt.datetime.fromisoformat(updated)
    return when < _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=days)


Callback = Callable[[Entry, bytes], None]


# --- one collection run --------------------------------------------------------------

@dataclass
class CollectOptions:
    labels: tuple = ("WHITE", "GREEN", "AMBER", "RED", "UNLABELED")
    have_auth: bool = False
    require_hash: bool = True
    verifier: Optional[OpenPGPVerifier] = None
    use_provider_keys: bool = True
    max_age_days: int = 0
    scheme: str = "https"


@dataclass
class CollectStats:
    providers: int = 0
    distributions: int = 0
    listed: int = 0
    delivered: int = 0
    failed: int = 0
    skipped_feeds: int = 0


def collect(start: str, fetcher: Fetcher, state: RunState, emit: Callable, log,
            options: Optional[CollectOptions] = None) -> CollectStats:
    """Discover, list, download, verify; call ``emit(entry, body, level)`` for each new advisory.

    The state is saved after each emitted advisory (an interrupted run resumes);
    a failed advisory is logged with its URL, not emitted, not recorded, and the
    run goes on.  Raises :class:`FetchError` only when discovery finds nothing.
    """
    options = options or CollectOptions()
    stats = CollectStats()
    labels = {str(label).upper() for label in options.labels}
    from intelmq_crossborder.formats.csaf import document as csaf
    for meta_url, metadata in discover(start, fetcher, log, options.scheme):
        stats.providers += 1
        problems, total = csaf.validate(metadata, "provider", limit=3)
        if problems:
            log.info("Deviation in %s: provider metadata fails the schema in %d place(s): %s; read anyway.",
                     meta_url, total, "; ".join(map(str, problems)))
        if options.verifier is not None and options.use_provider_keys:
            options.verifier.import_provider_keys(metadata, fetcher, log, meta_url)
        for dist in distributions(meta_url, metadata, log):
            label = (dist.tlp_label or "UNLABELED").upper()
            if dist.kind == "rolie" and label not in labels:
                log.debug("Feed %s (TLP %s) not configured for collection, skipped.", dist.url, label)
                continue
            try:
                level = feed_level(dist.tlp_label)
            except tlp.UnknownTLPError as exc:
                log.warning("Feed %s skipped: %s.", dist.url, exc)
                stats.skipped_feeds += 1
                continue
            if level is not None and level >= tlp.Level.AMBER and not options.have_auth:
                log.warning("Feed %s is TLP %s and needs authentication: configure a client certificate "
                            "or http_header; skipped.", dist.url, level.label)
                stats.skipped_feeds += 1
                continue
            stats.distributions += 1
            try:
                if dist.kind == "rolie":
                    entries = rolie_entries(dist.url, fetcher.get_json(dist.url), log, dist.tlp_label)
                else:
                    entries = directory_entries(dist.url, fetcher, log, dist.tlp_label)
            except FetchError as exc:
                log.warning("Distribution %s not readable: %s; skipped this run.", dist.url, exc.reason)
                continue
            stats.listed += len(entries)
            todo = [e for e in entries if state.is_new(dist.url, e) and not older_than(e.updated, options.max_age_days)]
            todo.sort(key=lambda e: e.updated or "")
            log.info("Distribution %s: %d advisories listed, %d new or changed.", dist.url, len(entries), len(todo))
            for entry in todo:
                try:
                    body = fetcher.get(entry.url)
                    verify_hash(entry, body, fetcher, options.require_hash)
                    if options.verifier is not None:
                        if not entry.signature_url:
                            raise VerificationError(entry.url, "no signature listed")
                        try:
                            signature = fetcher.get(entry.signature_url)
                        except FetchError as exc:
                            raise VerificationError(entry.url, f"signature not readable: {exc}") from None
                        options.verifier.verify(entry.url, body, signature)
                    try:
                        inputs.loads_json(body, entry.url)
                    except inputs.InputError as exc:
                        raise VerificationError(entry.url, f"not JSON the hub accepts ({_where(exc)}{exc.reason})") \
                            from None
                except (FetchError, VerificationError) as exc:
                    stats.failed += 1
                    log.warning("Advisory %s not emitted: %s.", entry.url, exc.reason)
                    continue
                emit(entry, body, level)
                state.mark(dist.url, entry)
                stats.delivered += 1
            state.prune(dist.url, [e.url for e in entries])
    return stats
