"""TAXII 2.1 client logic over ``taxii2-client``: find a collection, read it in pages since a
point in time, push envelopes and follow their status, with the shared backoff.

Used by the TAXII collector and output bots; unit-tested against a real TAXII 2.1 server
(``medallion``, ``intelmq_crossborder.testing.taxii_server``) and a faulty one.

Public API
    :class:`Connection`      one server: credentials (basic auth or an API-key header), TLS
                             verification, a timeout on every request, retries of 429/5xx and
                             dropped connections with ``core.retry.Backoff`` (``Retry-After``
                             honoured up to the backoff's maximum).
    :meth:`Connection.collection`  discovery -> API root -> collection by id or title.
    :func:`pages`            the objects of a collection added after a time, page by page
                             (``limit``/``next``), with the ``X-TAXII-Date-Added-*`` headers.
    :class:`CollectorState`  where a collector stands (``added_after`` and the objects already
                             emitted at that instant), kept in a JSON file written atomically.
    :func:`collect`          one incremental run: pages -> ``emit`` -> state saved after each page.
    :class:`Pusher`          POST an envelope, poll its status resource until every object is
                             accepted or refused; a refusal of an object whose version the
                             collection already holds (a retried request) counts as accepted.
    :class:`TAXIIError`      the server refused (4xx) or answered something that is not TAXII;
    :class:`TAXIIUnavailable`  it kept failing (429/5xx/connection) after every retry.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.files import atomic_write_json
from intelmq_crossborder.core.parameters import as_float, as_int, is_unset, optional
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.core.secrets import redact_in_logs

__all__ = ["MEDIA_TYPE", "TAXIIError", "TAXIIUnavailable", "Connection", "Page", "pages", "CollectorState",
           "collect", "Pusher", "PushResult", "object_version", "just_before", "Outgoing", "BatchOutcome",
           "push_batch", "PushedStore", "read_parameters", "with_default_tlp"]

MEDIA_TYPE = "application/taxii+json;version=2.1"
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_ANSWER = 64 * 1024 * 1024


class TAXIIError(CrossBorderError, RuntimeError):
    """The TAXII server refused a request (4xx other than 429) or answered something that is not
    TAXII 2.1; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class TAXIIUnavailable(TAXIIError):
    """The server kept answering 429/5xx, or could not be reached, after every retry."""


class _HeaderAuth(requests.auth.AuthBase):
    def __init__(self, name: str, value: str):
        self.name, self.value = name, value

    def __call__(self, request):
        request.headers[self.name] = self.value
        return request


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class Connection:
    """One TAXII 2.1 server.  ``url``: its discovery URL (``.../taxii2/``) or an API root URL.

    Credentials: ``user``/``password`` (basic auth), or ``api_key`` sent in the header
    ``api_key_header`` (``Authorization`` with ``api_key_prefix`` ``Bearer`` for OpenCTI).  The
    secrets are registered for redaction in ``logger`` and urllib3's logger."""

    def __init__(self, url: str, *, user: Optional[str] = None, password: Optional[str] = None,
                 api_key: Optional[str] = None, api_key_header: str = "Authorization", api_key_prefix: str = "",
                 verify: Any = True, timeout: float = 60.0, attempts: int = 5, backoff: Optional[Backoff] = None,
                 sleep: Callable[[float], None] = time.sleep, logger: Optional[logging.Logger] = None):
        from taxii2client.common import _HTTPConnection
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TAXIIError(f"TAXII URL {url!r} is not an http(s) URL")
        self.url = url if url.endswith("/") else url + "/"
        self.logger = logger or logging.getLogger(__name__)
        self.attempts, self.sleep = attempts, sleep
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.retries = 0
        auth = None
        if api_key:
            auth = _HeaderAuth(api_key_header, f"{api_key_prefix} {api_key}".strip())
        for value in (password, api_key):
            redact_in_logs(value, self.logger, logging.getLogger("urllib3"), logging.getLogger("taxii2client"))
        self.conn = _HTTPConnection(user if not api_key else None, password if not api_key else None, verify,
                                    version="2.1", auth=auth)
        adapter = _TimeoutAdapter(timeout)
        self.conn.session.mount("http://", adapter)
        self.conn.session.mount("https://", adapter)

    def close(self) -> None:
        self.conn.close()

    # --- retries ----------------------------------------------------------------------
    def call(self, what: str, func: Callable[[], Any]) -> Any:
        """``func()``, retried on 429/5xx, dropped connections and timeouts; then
        :class:`TAXIIUnavailable`.  Another 4xx, or an answer that is not JSON, raises
        :class:`TAXIIError` at once."""
        from taxii2client.exceptions import TAXIIServiceException, ValidationError
        last: BaseException = RuntimeError("no attempt")
        for attempt in range(self.attempts + 1):
            retry_after = None
            try:
                return func()
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status not in _TRANSIENT_STATUS:
                    raise TAXIIError(f"TAXII {what} at {self.url} refused: HTTP {status}"
                                     f"{_reason(exc.response)}", status) from None
                last = exc
                retry_after = _retry_after(exc.response)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = exc
            except (ValueError, KeyError, TypeError, AttributeError, TAXIIServiceException,
                    ValidationError) as exc:        # JSON decoding, content type, a resource's shape
                raise TAXIIError(f"TAXII {what} at {self.url}: the answer is not TAXII 2.1 JSON: "
                                 f"{_first_line(exc)}") from None
            if attempt < self.attempts:
                wait = self.backoff.delay(attempt + 1)
                if retry_after is not None:
                    cap = self.backoff.maximum if self.backoff.maximum is not None else retry_after
                    wait = max(wait, min(retry_after, cap))
                self.retries += 1
                self.logger.warning("TAXII %s at %s failed (%s), retry %d of %d in %.2f s.", what, self.url,
                                    _first_line(last), attempt + 1, self.attempts, wait)
                self.sleep(wait)
        raise TAXIIUnavailable(f"TAXII {what} at {self.url} failed after {self.attempts + 1} attempt(s): "
                               f"{_first_line(last)}")

    # --- discovery --------------------------------------------------------------------
    def api_root(self, api_root: Optional[str] = None):
        """The API root: ``api_root`` is a URL or a title among the server's API roots (default:
        the discovery's ``default``, else the only one); when :attr:`url` is itself an API root,
        that one."""
        from taxii2client.v21 import ApiRoot, Server
        server = Server(self.url, conn=self.conn)
        try:
            self.call("discovery", server.refresh)
            # taxii2-client builds the API roots of a discovery without the connection's credentials
            roots = [ApiRoot(root.url, conn=self.conn) for root in server.api_roots]
            is_discovery = bool(roots) or server.default is not None
        except TAXIIUnavailable:
            raise
        except TAXIIError:
            is_discovery = False
        if not is_discovery:
            root = ApiRoot(self.url, conn=self.conn)       # not a discovery URL: an API root?
            self.call("API root information", root.refresh_information)
            return root
        if api_root:
            wanted = str(api_root)
            for root in roots:
                if root.url.rstrip("/") == wanted.rstrip("/"):
                    return root
            matches = []
            for root in roots:
                self.call("API root information", root.refresh_information)
                if root.title == wanted:
                    matches.append(root)
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise TAXIIError(f"{len(matches)} API roots of {self.url} are titled {wanted!r}; name one by URL")
            raise TAXIIError(f"no API root {wanted!r} at {self.url} (it has: "
                             f"{', '.join(r.url for r in roots) or 'none'})")
        if server.default is not None:
            return ApiRoot(server.default.url, conn=self.conn)
        if len(roots) == 1:
            return roots[0]
        raise TAXIIError(f"{self.url} has {len(roots)} API roots and no default; set api_root")

    def collection(self, collection: str, api_root: Optional[str] = None):
        """The collection whose id, else whose title, is exactly ``collection``."""
        if not isinstance(collection, str) or not collection.strip():
            raise TAXIIError("no collection named: set the collection's id or title")
        root = self.api_root(api_root)
        self.call("collections", root.refresh_collections)
        found = [c for c in root.collections if c.id == collection]
        if not found:
            found = [c for c in root.collections if c.title == collection]
        if len(found) == 1:
            return found[0]
        names = ", ".join(f"{c.id} ({c.title!r})" for c in root.collections) or "none"
        if found:
            raise TAXIIError(f"{len(found)} collections of {root.url} are titled {collection!r}; use its id "
                             f"({names})")
        hint = " (mind blanks around it)" if collection != collection.strip() else ""
        raise TAXIIError(f"no collection {collection!r}{hint} in API root {root.url} (it has: {names})")


def _reason(response) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
        text = body.get("description") or body.get("title") or ""
    except Exception:      # noqa: BLE001 - a non-JSON error page: its first line
        text = (response.text or "").strip().splitlines()[0] if (response.text or "").strip() else ""
    return f" ({str(text)[:300]})" if text else ""


def _retry_after(response) -> Optional[float]:
    value = response.headers.get("Retry-After") if response is not None else None
    if value and value.strip().isdigit():
        return float(min(int(value.strip()), 3600))
    return None


# --- reading a collection ------------------------------------------------------------------

def object_version(obj: Mapping[str, Any]) -> str:
    """The version of a STIX object as TAXII counts it: ``modified``, else ``created``, else ''."""
    for name in ("modified", "created"):
        value = obj.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _parse_time(value: str) -> _dt.datetime:
    when = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def just_before(value: str) -> str:
    """The TAXII timestamp one microsecond before ``value``: ``added_after`` of it includes the
    objects added at ``value`` (the ones already emitted are skipped by id and version)."""
    when = _parse_time(value) - _dt.timedelta(microseconds=1)
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Page:
    objects: List[dict]
    more: bool
    next: Optional[str]
    date_added_first: Optional[str]
    date_added_last: Optional[str]


def _envelope(data: bytes, url: str) -> tuple:
    try:
        body = inputs.loads_json(data, url)
    except inputs.InputError as exc:
        raise TAXIIError(f"TAXII objects at {url}: {exc}") from None
    if not isinstance(body, dict):
        raise TAXIIError(f"TAXII objects at {url}: the envelope is {inputs.kind_of(body)}, not an object")
    objects = body.get("objects", [])
    if not isinstance(objects, list):
        raise TAXIIError(f"TAXII objects at {url}: field objects is {inputs.kind_of(objects)}, not a list")
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("type"), str):
            raise TAXIIError(f"TAXII objects at {url}: objects[{i}] is not a STIX object with a string id and type")
    more = body.get("more", False)
    nxt = body.get("next")
    if not isinstance(more, bool) or (nxt is not None and not isinstance(nxt, str)):
        raise TAXIIError(f"TAXII objects at {url}: fields more/next are not a boolean and a string")
    return objects, more, nxt


def pages(connection: Connection, collection, added_after: Optional[str] = None, limit: int = 100) -> Iterator[Page]:
    """The objects of ``collection`` added after ``added_after``, one :class:`Page` per request,
    following ``next`` while the server says ``more``."""
    url = collection.objects_url
    session = connection.conn.session
    nxt: Optional[str] = None
    while True:
        params = {"limit": str(limit)}
        if added_after:
            params["added_after"] = added_after
        if nxt:
            params["next"] = nxt

        def get(params=params):
            response = session.get(url, params=params, headers={"Accept": MEDIA_TYPE})
            response.raise_for_status()
            return response, response.content

        response, data = connection.call("get objects", get)
        if len(data) > _MAX_ANSWER:
            raise TAXIIError(f"TAXII objects at {url}: answer of {len(data)} bytes is over {_MAX_ANSWER}")
        objects, more, nxt = _envelope(data, url)
        page = Page(objects, more, nxt, response.headers.get("X-TAXII-Date-Added-First"),
                    response.headers.get("X-TAXII-Date-Added-Last"))
        yield page
        if not more:
            return
        if not nxt:
            raise TAXIIError(f"TAXII objects at {url}: the server says more but gives no next")


@dataclass
class CollectorState:
    """Where a collector stands: ``added_after`` (the date_added of the last object emitted) and
    ``seen``, the ``(id, version)`` of the objects emitted in the page that ended there."""

    path: Path
    collection: str = ""
    added_after: Optional[str] = None
    seen: set = field(default_factory=set)

    @classmethod
    def load(cls, path, collection: str) -> "CollectorState":
        path = Path(path)
        state = cls(path, collection)
        if not path.exists():
            return state
        try:
            data = inputs.read_json(path, what="TAXII collector state")
        except inputs.InputError as exc:
            raise TAXIIError(f"state file {exc}") from None
        if not isinstance(data, dict):
            raise TAXIIError(f"state file {path}: not a JSON object; delete it to collect everything again")
        if data.get("collection") not in (None, collection):
            raise TAXIIError(f"state file {path} belongs to collection {data.get('collection')!r}, not "
                             f"{collection!r}; use another state_file")
        after = data.get("added_after")
        seen = data.get("seen", [])
        if after is not None:
            if not isinstance(after, str):
                raise TAXIIError(f"state file {path}: field added_after is not a string")
            try:
                _parse_time(after)
            except ValueError:
                raise TAXIIError(f"state file {path}: field added_after {after!r} is not a timestamp") from None
        if not isinstance(seen, list) or not all(isinstance(s, list) and len(s) == 2 and
                                                 all(isinstance(p, str) for p in s) for s in seen):
            raise TAXIIError(f"state file {path}: field seen is not a list of [id, version] pairs")
        state.added_after, state.seen = after, {tuple(s) for s in seen}
        return state

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"version": 1, "collection": self.collection, "added_after": self.added_after,
                                      "seen": sorted([list(s) for s in self.seen])})


@dataclass
class CollectStats:
    pages: int = 0
    emitted: int = 0
    skipped: int = 0


def collect(connection: Connection, collection, state: CollectorState, emit: Callable[[List[dict]], None], *,
            limit: int = 100, logger: Optional[logging.Logger] = None) -> CollectStats:
    """One incremental run: each page's objects not emitted before go to ``emit``, then the
    state moves to the page's ``X-TAXII-Date-Added-Last`` and is saved.  An interrupted run
    resumes after the last saved page; objects added at the same instant as the state's
    ``added_after`` are read again and skipped by ``(id, version)``, so none is lost and none
    emitted twice."""
    log = logger or logging.getLogger(__name__)
    stats = CollectStats()
    after = just_before(state.added_after) if state.added_after else None
    for page in pages(connection, collection, after, limit):
        stats.pages += 1
        keys = [(o["id"], object_version(o)) for o in page.objects]
        new = [o for o, key in zip(page.objects, keys) if key not in state.seen]
        stats.skipped += len(page.objects) - len(new)
        if new:
            emit(new)
            stats.emitted += len(new)
        last = page.date_added_last
        if not last and page.objects:
            # a server without the header TAXII 2.1 requires: the newest version seen (with a warning)
            last = max((object_version(o) for o in page.objects), default="") or None
            log.warning("TAXII server sent no X-TAXII-Date-Added-Last; continuing after the newest object "
                        "version of the page (%s).", last)
        if last:
            try:
                _parse_time(last)
            except ValueError:
                raise TAXIIError(f"TAXII objects at {collection.objects_url}: X-TAXII-Date-Added-Last {last!r} "
                                 "is not a timestamp") from None
            if last == state.added_after:
                state.seen |= set(keys)
            else:
                state.added_after, state.seen = last, set(keys)
            state.save()
    return stats


def with_default_tlp(objects: List[dict], level) -> tuple:
    """``(objects, n)``: the objects of a page where each object that carries no TLP marking of
    its own gets the marking of ``level`` (a collection's default TLP), with its marking
    definition (and the TLP 2.0 extension definition) put in front; ``n`` objects got it.

    Markings are only added, never removed: an object inheriting a lower label from a container
    ends at the default at most, never below what it says.  An object whose markings cannot be
    read is left as it is (the parser refuses it, naming the field)."""
    from intelmq_crossborder.core import tlp
    from intelmq_crossborder.formats.stix import markings
    try:
        defined = markings.definitions(objects)
    except tlp.LabelError:
        defined = {}
    ref = markings.marking_ref(level, "2.0")
    out, added = [], 0
    for obj in objects:
        if obj.get("type") in ("marking-definition", "extension-definition", "language-content"):
            out.append(obj)
            continue
        try:
            resolved = markings.resolve(markings.object_refs(obj), defined)
        except tlp.LabelError:
            out.append(obj)
            continue
        if resolved.level is None:
            obj = dict(obj)
            obj["object_marking_refs"] = list(obj.get("object_marking_refs") or []) + [ref]
            added += 1
        out.append(obj)
    if added:
        out = markings.bundle_objects([level], ("2.0",)) + out
    return out, added


# --- pushing ---------------------------------------------------------------------------------

@dataclass
class PushResult:
    """Per object id: ``accepted``; ``refused`` with the server's message; ``pending`` (the status
    was not final when polling gave up: push again later)."""

    accepted: set = field(default_factory=set)
    refused: dict = field(default_factory=dict)
    pending: set = field(default_factory=set)


class Pusher:
    """Pushes envelopes to one collection and follows each status resource until it is final."""

    def __init__(self, connection: Connection, collection, *, poll_interval: float = 1.0,
                 poll_timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.connection, self.collection = connection, collection
        self.poll_interval, self.poll_timeout = poll_interval, poll_timeout
        self.sleep, self.clock = sleep, clock
        self.requests = 0

    def push(self, objects: Iterable[Mapping[str, Any]]) -> PushResult:
        objects = list(objects)
        result = PushResult()
        if not objects:
            return result
        data = json.dumps({"objects": objects}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        session = self.connection.conn.session

        def post():
            response = session.post(self.collection.objects_url, data=data,
                                    headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE})
            response.raise_for_status()
            return response.content

        self.requests += 1
        status = self._status_body(self.connection.call("add objects", post), "add objects")
        deadline = self.clock() + self.poll_timeout
        while status.get("status") != "complete" and self.clock() < deadline:
            self.sleep(self.poll_interval)
            status = self._poll(status["id"])
        versions = {o["id"]: object_version(o) for o in objects}
        for item in status.get("successes") or []:
            if isinstance(item, dict) and item.get("id") in versions:
                result.accepted.add(item["id"])
        for item in status.get("failures") or []:
            if isinstance(item, dict) and item.get("id") in versions and item["id"] not in result.accepted:
                message = item.get("message") if isinstance(item.get("message"), str) else "refused"
                if self._holds(item["id"], versions[item["id"]]):
                    result.accepted.add(item["id"])        # a retried request: the version is there
                else:
                    result.refused[item["id"]] = message
        for oid in versions:
            if oid not in result.accepted and oid not in result.refused:
                result.pending.add(oid)
        return result

    def _status_body(self, data: bytes, what: str) -> dict:
        try:
            body = inputs.loads_json(data, f"TAXII {what} status")
        except inputs.InputError as exc:
            raise TAXIIError(str(exc)) from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or \
                body.get("status") not in ("pending", "complete"):
            raise TAXIIError(f"TAXII {what} at {self.collection.objects_url}: the answer is not a status resource")
        return body

    def _poll(self, status_id: str) -> dict:
        from urllib.parse import urljoin
        url = urljoin(self.collection.url, f"../../status/{status_id}/")
        session = self.connection.conn.session

        def get():
            response = session.get(url, headers={"Accept": MEDIA_TYPE})
            response.raise_for_status()
            return response.content

        return self._status_body(self.connection.call("status", get), "status")

    def _holds(self, object_id: str, version: str) -> bool:
        """Whether the collection holds ``object_id`` at ``version``."""
        session = self.connection.conn.session
        url = self.collection.objects_url + object_id + "/"
        params = {"match[version]": version or "all"}

        def get():
            response = session.get(url, params=params, headers={"Accept": MEDIA_TYPE})
            if response.status_code == 404:
                return b'{"objects": []}'
            response.raise_for_status()
            return response.content

        try:
            objects, _, _ = _envelope(self.connection.call("get object", get), url)
        except TAXIIError:
            return False
        return any(o.get("id") == object_id and object_version(o) == version for o in objects)


# --- the output's batches -------------------------------------------------------------------

@dataclass
class Outgoing:
    """One event's STIX objects on their way to a collection: ``objects`` (the indicator or
    observed-data first, then its SCOs), ``support`` (the identities they reference), the
    ``level`` they are marked with and the ids of the hub's event (``event_uuid``,
    ``fingerprint``) under which a retraction finds them.  ``message``: the bot's message."""

    objects: List[dict]
    level: Any = None
    support: List[dict] = field(default_factory=list)
    event_uuid: Optional[str] = None
    fingerprint: Optional[str] = None
    message: Any = None

    @property
    def primary(self) -> dict:
        return self.objects[0]


@dataclass
class BatchOutcome:
    """``done``: every object of the item is in the collection; ``refused``: ``(item, reason)``,
    the server refused one of its objects (dump it); ``pending``: push again later (``error``
    says why: the server unavailable, statuses not final)."""

    done: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    error: Optional[str] = None


#: Whole-request refusals that may come from one object of the envelope: pushed one by one.
_SPLIT_STATUS = frozenset({400, 413, 422})


def push_batch(pusher: Pusher, items: List[Outgoing], definitions: List[dict],
               known: Optional[set] = None) -> BatchOutcome:
    """Push ``items`` in one envelope with the marking/extension ``definitions`` and the identities
    (``support``) the collection is not ``known`` to hold yet (ids accepted are added to ``known``).

    The server unavailable (after the connection's retries): every item pending.  A whole
    envelope refused with 400/413/422: each item pushed alone, and an item still refused alone is
    refused with the server's reason.  Another refusal (401, 403, 404: configuration) raises
    :class:`TAXIIError`."""
    known = known if known is not None else set()
    outcome = BatchOutcome()
    if not items:
        return outcome
    envelope: dict = {}
    for obj in definitions:
        if obj["id"] not in known:
            envelope.setdefault(obj["id"], obj)
    shared = list(envelope)
    for item in items:
        for obj in item.support:              # identities: once, like the definitions
            if obj["id"] not in known and obj["id"] not in envelope:
                envelope[obj["id"]] = obj
                shared.append(obj["id"])
        for obj in item.objects:
            envelope.setdefault(obj["id"], obj)
    try:
        result = pusher.push(list(envelope.values()))
    except TAXIIUnavailable as exc:
        outcome.pending, outcome.error = list(items), str(exc)
        return outcome
    except TAXIIError as exc:
        if exc.status not in _SPLIT_STATUS:
            raise
        if len(items) == 1:
            outcome.refused.append((items[0], str(exc)))
            return outcome
        for item in items:
            one = push_batch(pusher, [item], definitions, known)
            outcome.done += one.done
            outcome.refused += one.refused
            outcome.pending += one.pending
            outcome.error = one.error or outcome.error
        return outcome
    known.update(oid for oid in shared if oid in result.accepted)
    for item in items:
        ids = [o["id"] for o in item.objects] + [oid for oid in shared]
        refused = [f"{oid}: {result.refused[oid]}" for oid in ids if oid in result.refused]
        if refused:
            outcome.refused.append((item, "; ".join(refused)[:1000]))
        elif any(oid in result.pending for oid in ids):
            outcome.pending.append(item)
        else:
            outcome.done.append(item)
    if outcome.pending and not outcome.error:
        outcome.error = f"{len(result.pending)} object(s) still pending after polling their status"
    return outcome


class PushedStore:
    """What an output pushed to its collection, for retractions: the latest version of each
    indicator or observed-data (``<prefix>:objects``, a Redis hash by STIX id, with its level) and
    the STIX ids per hub event uuid and fingerprint (``<prefix>:uuid:<uuid>``, ``<prefix>:fp:<fp>``)."""

    def __init__(self, redis, prefix: str):
        self.redis, self.prefix = redis, prefix

    def record(self, item: Outgoing) -> None:
        primary = item.primary
        pipe = self.redis.pipeline(transaction=True)
        level = getattr(item.level, "label", item.level)
        pipe.hset(f"{self.prefix}:objects", primary["id"], json.dumps({"level": level, "object": primary}))
        if item.event_uuid:
            pipe.sadd(f"{self.prefix}:uuid:{item.event_uuid}", primary["id"])
        if item.fingerprint:
            pipe.sadd(f"{self.prefix}:fp:{item.fingerprint}", primary["id"])
        pipe.execute()

    def replace(self, obj: dict, level: Any) -> None:
        self.redis.hset(f"{self.prefix}:objects", obj["id"],
                        json.dumps({"level": getattr(level, "label", level), "object": obj}))

    def held(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None) -> list:
        """``(level label, latest object)`` of what was pushed under either id."""
        ids: set = set()
        if event_uuid:
            ids |= {i.decode() if isinstance(i, bytes) else i for i in self.redis.smembers(f"{self.prefix}:uuid:{event_uuid}")}
        if fingerprint:
            ids |= {i.decode() if isinstance(i, bytes) else i for i in self.redis.smembers(f"{self.prefix}:fp:{fingerprint}")}
        out = []
        for oid in sorted(ids):
            raw = self.redis.hget(f"{self.prefix}:objects", oid)
            if raw:
                entry = json.loads(raw)
                out.append((entry["level"], entry["object"]))
        return out


# --- the bots' parameters -----------------------------------------------------------------

def read_parameters(parameters: Mapping[str, Any], defaults: Mapping[str, Any], minimum: Mapping[str, float],
                    required: Iterable[str]) -> tuple:
    """``(values, problems)`` of a TAXII bot's parameters: each of ``defaults`` typed like its
    default, an unset one ('' from IntelMQ Manager, null, missing) as the default; numbers at
    least ``minimum``; ``required`` set; the URL, TLP, profile, kind and backoff checked."""
    from intelmq_crossborder.core import tlp
    from intelmq_crossborder.formats.stix import export
    values: dict = {}
    problems: list = []
    for name, default in defaults.items():
        raw = parameters.get(name)
        try:
            if isinstance(default, bool):
                if is_unset(raw):
                    values[name] = default
                elif isinstance(raw, bool):
                    values[name] = raw
                else:
                    raise ValueError(f"Parameter {name} must be true or false, not {raw!r}")
            elif isinstance(default, int):
                values[name] = as_int(raw, default, name)
            elif isinstance(default, float):
                values[name] = as_float(raw, default, name)
            else:
                value = optional(raw, default)
                if not isinstance(value, str):
                    raise ValueError(f"Parameter {name} must be a string, not {type(value).__name__}")
                if value != value.strip():
                    raise ValueError(f"Parameter {name} {value!r} has blanks around it")
                values[name] = value
        except ValueError as exc:
            problems.append(str(exc).rstrip(".") + ".")
            values[name] = default
    for name, low in minimum.items():
        if name in values and values[name] < low:
            problems.append(f"Parameter {name} must be at least {low}, not {values[name]}.")
    for name in required:
        if not values.get(name) and not any(p.startswith(f"Parameter {name} ") for p in problems):
            problems.append(f"Parameter {name} is required.")
    url = values.get("taxii_url", "")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"Parameter taxii_url {url!r} must be an http:// or https:// URL.")
    if "max_tlp" in values:
        try:
            level = tlp.parse_level(values["max_tlp"], "parameter max_tlp")
            if level >= tlp.Level.AMBER_STRICT:
                problems.append(f"Parameter max_tlp: TLP:{level.label} is never pushed automatically; use AMBER or "
                                "lower.")
        except tlp.UnknownTLPError as exc:
            problems.append(f"Parameter max_tlp: {exc}.")
    if values.get("recipient_profile", "oasis") not in export.PROFILES:
        problems.append(f"Parameter recipient_profile must be one of {', '.join(export.PROFILES)}.")
    if values.get("export_kind", "indicator") not in export.KINDS:
        problems.append(f"Parameter export_kind must be one of {', '.join(export.KINDS)}.")
    if "retry_backoff" in values and "retry_max_backoff" in values:
        try:
            Backoff(values["retry_backoff"], values["retry_max_backoff"])
        except ValueError as exc:
            problems.append(f"Parameters retry_backoff/retry_max_backoff: {exc}.")
    return values, problems
