"""Retractions in the data lake: find the documents a retraction names, delete or relabel them.

A retraction (:mod:`intelmq_crossborder.policy.retraction`, docs/retraction.md) names its target
by ids only.  The lake finds the documents by id (:func:`target_query`: the document ``_id`` is
the first of the output's ``id_fields``, by default the fingerprint) and by the provenance
fields, over every index of the output's prefix, then (:func:`plan`) per document:

- withdraw, erase, or a relabel above the output's ``tlp_ceiling``: the document is deleted
  (a ``delete`` bulk action by ``_index`` and ``_id``);
- a relabel within the ceiling: the document is written again with the higher label (and,
  when the source becomes hidden, without :data:`intelmq_crossborder.core.tlp.SOURCE_FIELDS`).

What stays is the retraction itself, indexed as a tombstone document (:func:`tombstone`) in
``<prefix>.retractions`` (:func:`tombstone_index`; outside ``<prefix>-*``, so that dashboards over
the events do not count tombstones): ids, action, reason, time and originator, never a value.

A document whose source is hidden carries ids derived from the event's (``without_source``: the
uuid through :func:`~intelmq_crossborder.policy.redact.hidden_event_uuid`, a fingerprint over a
removed field recomputed), so that a lake reader cannot test guesses of the hidden values.  The
derived uuid is found from the retraction's; the recomputed fingerprint is not: :class:`IdMap`, a
small SQLite file in the output's private state folder (never in the lake), keeps the original ids
of such documents, and :func:`apply` searches for both.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone
from typing import Iterable, List, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.datalake import elastic
from intelmq_crossborder.policy import retraction as policy
from intelmq_crossborder.policy.redact import hidden_event_uuid

__all__ = ["target_query", "flat_event", "plan", "apply", "tombstone", "LakeRetraction", "RetractionFailed",
           "tombstone_index", "IdMap"]

#: documents one retraction may touch at most in one pass; more are taken in further passes
PAGE = 1000


class RetractionFailed(CrossBorderError, RuntimeError):
    """The lake could not be searched or did not take every action; the retraction is applied
    again (in full, it is idempotent) when IntelMQ hands it over again."""


class IdMap:
    """Original ids -> the ids a hidden-source document was stored under (SQLite file ``path``)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS ids (event_uuid TEXT NOT NULL, fingerprint TEXT NOT NULL, "
                          "stored_uuid TEXT NOT NULL, stored_fingerprint TEXT NOT NULL, "
                          "PRIMARY KEY (event_uuid, fingerprint, stored_uuid, stored_fingerprint))")
        self.conn.execute("CREATE INDEX IF NOT EXISTS ids_fingerprint ON ids(fingerprint)")

    def close(self) -> None:
        self.conn.close()

    def remember(self, flat: dict, doc: elastic.Doc) -> bool:
        """Record the ids of ``doc`` when they are not those of ``flat`` (the event as it arrived)."""
        stored = doc.source.get("provenance") or {}
        before = (flat.get("provenance.event_uuid") or "", flat.get("provenance.fingerprint") or "")
        after = (stored.get("event_uuid") or "", stored.get("fingerprint") or "")
        if before == after or not any(before):
            return False
        self.conn.execute("INSERT OR IGNORE INTO ids VALUES (?,?,?,?)", (*before, *after))
        return True

    def stored(self, retraction: policy.Retraction) -> tuple:
        """``(uuids, fingerprints)`` the retraction's target may have been stored under."""
        if retraction.scope == "event" and retraction.target_event_uuid:
            rows = self.conn.execute("SELECT stored_uuid, stored_fingerprint FROM ids WHERE event_uuid = ?",
                                     (retraction.target_event_uuid,)).fetchall()
        else:
            rows = self.conn.execute("SELECT stored_uuid, stored_fingerprint FROM ids WHERE fingerprint = ?",
                                     (retraction.target_fingerprint or "",)).fetchall()
        return sorted({u for u, _ in rows if u}), sorted({f for _, f in rows if f})


def _uuids(event_uuid: Optional[str]) -> list:
    """The event's uuid and the one the lake stores when the source is hidden
    (:func:`intelmq_crossborder.policy.redact.hidden_event_uuid`, unkeyed as the lake derives it)."""
    return [event_uuid, hidden_event_uuid(event_uuid)] if event_uuid else []


def target_query(retraction: policy.Retraction, aliases: tuple = ((), ())) -> dict:
    """The query of the documents ``retraction`` may name (ids and provenance fields only; with
    ``aliases``, :meth:`IdMap.stored`); :func:`plan` then keeps those that
    :meth:`~policy.Retraction.matches`."""
    should: list = []
    if aliases[0]:
        should.append({"terms": {"provenance.event_uuid": list(aliases[0])}})
    if aliases[1]:
        should += [{"ids": {"values": list(aliases[1])}}, {"terms": {"provenance.fingerprint": list(aliases[1])}}]
    fingerprint = retraction.target_fingerprint
    if retraction.scope == "indicator" or not retraction.target_event_uuid:
        if fingerprint:
            should += [{"ids": {"values": [fingerprint]}}, {"term": {"provenance.fingerprint": fingerprint}}]
    else:
        uuids = _uuids(retraction.target_event_uuid)
        should += [{"ids": {"values": uuids}}, {"terms": {"provenance.event_uuid": uuids}}]
        if fingerprint:
            should.append({"ids": {"values": [fingerprint]}})
    return {"bool": {"should": should, "minimum_should_match": 1}}


def flat_event(source: dict) -> dict:
    """A lake document's ``_source`` as the flat event it was built from (``extra`` one level
    deep, the lake's own ``lake.*`` and the derived ``*.geolocation.location`` left out)."""
    flat: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if name == "extra" and isinstance(value, dict):
                flat.update((f"extra.{k}", v) for k, v in value.items())
            elif name == "lake" or name.endswith(".geolocation.location"):
                continue
            elif isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = value
    walk(source, "")
    return flat


def _matches(retraction: policy.Retraction, flat: dict, doc_id: str, aliases: tuple = ((), ())) -> bool:
    """Whether the document (its provenance ids, else its ``_id``) is the retraction's target:
    :meth:`~policy.Retraction.matches`, with the uuid the lake derives for a hidden source and
    the ``aliases`` it was stored under."""
    uuid, fingerprint = flat.get("provenance.event_uuid"), flat.get("provenance.fingerprint")
    if (uuid and uuid in aliases[0]) or (fingerprint and fingerprint in aliases[1]) or doc_id in aliases[1]:
        return True
    by_fingerprint = bool(retraction.target_fingerprint) and retraction.target_fingerprint in (fingerprint, doc_id)
    if retraction.scope == "indicator":
        return by_fingerprint
    if retraction.target_event_uuid and uuid:
        return uuid in _uuids(retraction.target_event_uuid)
    return by_fingerprint


@dataclass
class LakeRetraction:
    """What one retraction does in the lake: the delete and index actions, and counts."""

    deletes: List[tuple] = field(default_factory=list)          # (index, id)
    relabels: List[elastic.Doc] = field(default_factory=list)
    kept: int = 0                                               # found by the query, not the target

    @property
    def actions(self) -> list:
        return ([{"_op_type": "delete", "_index": index, "_id": doc_id} for index, doc_id in self.deletes]
                + [doc.action() for doc in self.relabels])


def plan(retraction: policy.Retraction, hits: Iterable[dict], *, ceiling: tlp.Level, default: tlp.Level,
         drop_fields=("raw",), aliases: tuple = ((), ())) -> LakeRetraction:
    """The actions for the ``hits`` of :func:`target_query` (``_index``, ``_id``, ``_source``).
    A document whose labels cannot be read any more is deleted (fail closed)."""
    out = LakeRetraction()
    for hit in hits:
        flat = flat_event(hit.get("_source") or {})
        if not _matches(retraction, flat, hit["_id"], aliases):
            out.kept += 1
            continue
        try:
            held = elastic.lake_tlp(flat, default)
        except tlp.LabelError:
            out.deletes.append((hit["_index"], hit["_id"]))
            continue
        what = policy.instruction(retraction, event_uuid=retraction.target_event_uuid,
                                  fingerprint=retraction.target_fingerprint, level=held.level, ceiling=ceiling)
        if what != policy.RELABEL:
            out.deletes.append((hit["_index"], hit["_id"]))
            continue
        level = retraction.new_level(held.level)
        hide = held.hide_source or bool(retraction.new_do_not_disclose_source)
        flat["sharing.tlp"] = level.label
        doc = elastic.build_document(flat, label=elastic.LakeTLP(level, hide), prefix="x", rotation="none",
                                     default_retention_days=None, now=datetime.now(timezone.utc),
                                     drop_fields=drop_fields)
        doc.index, doc.id = hit["_index"], hit["_id"]
        out.relabels.append(doc)
    return out


def tombstone_index(prefix: str) -> str:
    """The index of the retraction tombstones of the lake ``prefix``: ``<prefix>.retractions``."""
    return f"{prefix}.retractions"


def tombstone(retraction: policy.Retraction, prefix: str, now: Optional[datetime] = None) -> elastic.Doc:
    """The retraction as a document of :func:`tombstone_index` (ids, action, reason, time,
    originator: what the retraction carries, nothing of the target), ``_id`` its id."""
    source: dict = {}
    for name, value in retraction.to_event().items():
        node = source
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    source["lake"] = {"indexed_at": (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()}
    return elastic.Doc(id=retraction.id, index=tombstone_index(prefix), source=source,
                       level=tlp.Level.CLEAR)


def apply(client, retraction: policy.Retraction, *, prefix: str, ceiling: tlp.Level, default: tlp.Level,
          drop_fields=("raw",), idmap: Optional[IdMap] = None, logger: Optional[logging.Logger] = None) -> tuple:
    """Apply ``retraction`` to the lake: refresh, search ``<prefix>-*``, delete or relabel, then
    index the tombstone; returns ``(deleted, relabelled)``.  Raises :class:`RetractionFailed`."""
    aliases = idmap.stored(retraction) if idmap is not None else ((), ())
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    pattern = f"{prefix}-*"
    deleted = relabelled = 0
    seen: set = set()
    try:
        client.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
        while True:
            found = client.search(index=pattern, query=target_query(retraction, aliases), size=PAGE,
                                  ignore_unavailable=True, allow_no_indices=True)
            hits = [h for h in found["hits"]["hits"] if (h["_index"], h["_id"]) not in seen]
            if not hits:
                break
            seen.update((h["_index"], h["_id"]) for h in hits)
            todo = plan(retraction, hits, ceiling=ceiling, default=default, drop_fields=drop_fields, aliases=aliases)
            if todo.actions:
                _bulk(client, todo.actions)
            deleted += len(todo.deletes)
            relabelled += len(todo.relabels)
            if len(found["hits"]["hits"]) < PAGE:
                break
            client.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
        _bulk(client, [tombstone(retraction, prefix).action()])
    except (ApiError, TransportError) as exc:
        raise RetractionFailed(f"the lake did not apply retraction {retraction.id}: {type(exc).__name__}: "
                               f"{exc}") from None
    if logger:
        logger.debug("Retraction %s: %d deleted, %d relabelled.", retraction.id, deleted, relabelled)
    return deleted, relabelled


def _bulk(client, actions: list) -> None:
    from elasticsearch import helpers

    failed = []
    for ok, item in helpers.streaming_bulk(client, actions, raise_on_error=False, raise_on_exception=True,
                                           max_retries=0, yield_ok=True, refresh=True):
        (op, result), = item.items()
        if not ok and not (op == "delete" and result.get("status") == 404):     # already gone: done
            failed.append(f"{op} {result.get('_id')}: {elastic.classify_item(item)[2]}")
    if failed:
        raise RetractionFailed(f"the lake refused {len(failed)} action(s): {'; '.join(failed[:3])}")
