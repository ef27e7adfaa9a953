"""The CSAF output's spool: each advisory is rebuilt from all the events of its group.

Pure library (no IntelMQ), used by the CSAF output bot.  :meth:`AdvisorySpool.add` checks
one flat event (TLP admission, grouping, that it alone gives a valid CSAF 2.0 document),
appends it durably to the spool file of its advisory (``<state_dir>/<id>.jsonl``) and,
every ``write_every`` events of a group, rebuilds the advisory from the whole spool file
and writes it into the provider directory.  ``<id>.meta.json`` keeps the version, the
initial release date and the revision history between writes and restarts.

Every refusal is an :class:`~intelmq_crossborder.formats.csaf.provider.OutputError` naming
the field; an event refused by :meth:`add` never enters the spool.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from intelmq_crossborder.core import files, inputs, tlp
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.formats.csaf.provider import (OutputError, ProviderDirectory, admit, build_advisory,
                                                       events_tlp, group_value, safe_name, withdrawn_advisory)
from intelmq_crossborder.policy import retraction as policy
from intelmq_crossborder.policy.redact import hidden_event_uuid, without_source

__all__ = ["AdvisorySpool", "Written", "Retracted"]


@dataclass(frozen=True)
class Written:
    """One advisory written into the provider directory."""

    tracking_id: str
    version: int
    path: str
    events: int


@dataclass(frozen=True)
class Retracted:
    """What one retraction did to one advisory: the version written, the events removed and
    relabelled, and whether the advisory was withdrawn (no event left)."""

    tracking_id: str
    version: int
    path: str
    removed: int
    relabelled: int
    withdrawn: bool


#: the key of a spooled event whose source was hidden that keeps the ids it arrived with
ORIGINAL_IDS = "__original_ids"
_ID_FIELDS = ("provenance.event_uuid", "provenance.fingerprint")


def _holds(retraction: policy.Retraction, event: dict) -> bool:
    """Whether a spooled event is the retraction's target (:meth:`policy.Retraction.matches`; a
    spooled event whose source was hidden carries derived ids, and its original ones under
    :data:`ORIGINAL_IDS`)."""
    uuid, fingerprint = event.get("provenance.event_uuid"), event.get("provenance.fingerprint")
    if retraction.matches(uuid, fingerprint):
        return True
    original = event.get(ORIGINAL_IDS)
    if isinstance(original, dict) and retraction.matches(original.get("provenance.event_uuid"),
                                                         original.get("provenance.fingerprint")):
        return True
    return (retraction.scope == "event" and bool(retraction.target_event_uuid) and isinstance(uuid, str)
            and uuid == hidden_event_uuid(retraction.target_event_uuid))


class AdvisorySpool:
    """The spool of a CSAF output under ``state_dir``, writing into ``directory``.

    ``group_by``: the fields whose values name an event's advisory
    (``<tracking_prefix>-<values>``); ``fallback_group_by`` for events where those are all
    empty (empty: such events are refused).  ``max_level``: the highest effective TLP
    admitted (see :func:`~intelmq_crossborder.formats.csaf.provider.admit`).
    """

    def __init__(self, state_dir: str, directory: ProviderDirectory, publisher: dict, *,
                 max_level: tlp.Level, group_by: Sequence[str] = ("csaf.tracking_id",),
                 fallback_group_by: Sequence[str] = ("product.vulnerabilities",),
                 tracking_prefix: str = "HUB", write_every: int = 1):
        self.state_dir = state_dir
        self.directory = directory
        self.publisher = publisher
        self.max_level = max_level
        self.group_by = group_by
        self.fallback_group_by = fallback_group_by
        self.tracking_prefix = tracking_prefix
        self.write_every = max(1, int(write_every))
        #: tracking id -> events spooled since its advisory was last written
        self.pending: Dict[str, int] = {}

    # --- files -----------------------------------------------------------------------
    def spool_path(self, tracking_id: str) -> str:
        return os.path.join(self.state_dir, safe_name(tracking_id) + ".jsonl")

    def meta_path(self, tracking_id: str) -> str:
        return os.path.join(self.state_dir, safe_name(tracking_id) + ".meta.json")

    # --- events ----------------------------------------------------------------------
    def tracking_id(self, event: dict) -> tuple[str, dict]:
        """``(tracking id, event as it is spooled)``: admitted by its TLP, a hidden source's
        fields removed (before grouping: the source's tracking id must not become the
        advisory's id) and ``raw`` dropped.  :class:`OutputError` if it cannot be published."""
        if admit(event, self.max_level).hide_source:
            hidden = without_source(event)
            original = {k: event[k] for k in _ID_FIELDS if event.get(k)}
            if original and any(hidden.get(k) != v for k, v in original.items()):
                # the spool is private state: keep the ids a retraction names (never in an advisory)
                hidden[ORIGINAL_IDS] = original
            event = hidden
        tracking_id = self._group_id(event)
        if not (event.get("product.vulnerabilities") or event.get("classification.identifier")):
            raise OutputError("product.vulnerabilities", None,
                              "not a vulnerability event (no CVE, no classification.identifier)")
        return tracking_id, {k: v for k, v in event.items() if k != "raw"}

    def _group_id(self, event: dict) -> str:
        """The tracking id of the advisory of an (admitted, spooled) event."""
        try:
            group = group_value(event, self.group_by)
        except OutputError:
            if not self.fallback_group_by:
                raise
            group = group_value(event, self.fallback_group_by)
        return f"{self.tracking_prefix}-{group}"

    def add(self, event: dict) -> Optional[Written]:
        """Spool one flat event; returns the advisory when this event completed ``write_every``.

        An event that cannot be written as CSAF is refused before it enters the spool, where it
        would break every later rebuild of its group."""
        tracking_id, event = self.tracking_id(event)
        alone = build_advisory([event], tracking_id=tracking_id, publisher=self.publisher)
        problems, _ = csaf.validate(alone)
        if problems:
            raise OutputError("csaf", tracking_id, "the event gives no valid CSAF 2.0 document: "
                                                   + "; ".join(map(str, problems)))
        if tracking_id not in self.pending:        # the first event of the group in this process
            os.makedirs(self.state_dir, exist_ok=True)
        path = self.spool_path(tracking_id)
        line = (json.dumps(event, sort_keys=True) + "\n").encode("utf-8")
        # IntelMQ hands a message over again when process() failed after the append (e.g. the
        # advisory could not be written): the spool already holds it, as its last line
        if not _ends_with(path, line):
            with open(path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.pending[tracking_id] = self.pending.get(tracking_id, 0) + 1
        else:
            self.pending.setdefault(tracking_id, 1)
        if self.pending[tracking_id] >= self.write_every:
            return self.write(tracking_id)
        return None

    def events(self, tracking_id: str) -> List[dict]:
        """The spooled events of an advisory; a line that cannot be read is an :class:`OutputError`."""
        return self._read(self.spool_path(tracking_id))

    def _read(self, path: str) -> List[dict]:
        out = []
        with open(path, encoding="utf-8") as fh:
            for number, value in inputs.iter_json_lines(fh, path):
                if isinstance(value, inputs.InputError) or not isinstance(value, dict):
                    reason = value.reason if isinstance(value, inputs.InputError) else "not a JSON object"
                    raise OutputError("csaf.spool", f"{path}:{number}", f"spool line unreadable: {reason}; "
                                      "move the line away to write the advisory again")
                out.append(value)
        return out

    def _meta(self, tracking_id: str) -> dict:
        meta_path = self.meta_path(tracking_id)
        return inputs.read_json(meta_path, what="CSAF spool state") if os.path.exists(meta_path) else {}

    def write(self, tracking_id: str, summary: Optional[str] = None) -> Written:
        """Rebuild the advisory from its whole spool file, validate it and write it (next version);
        ``summary``: the revision history's text for this version."""
        events = self.events(tracking_id)
        meta = self._meta(tracking_id)
        version = meta.get("version", 0) + 1
        document = build_advisory(events, tracking_id=tracking_id, publisher=self.publisher, version=version,
                                  initial_release_date=meta.get("initial_release_date"),
                                  history=meta.get("history"), summary=summary)
        return self._publish(tracking_id, document, len(events))

    def _publish(self, tracking_id: str, document: dict, events: int) -> Written:
        problems, _ = csaf.validate(document)
        if problems:
            raise OutputError("csaf", tracking_id, "generated document fails the CSAF 2.0 schema: "
                                                   + "; ".join(map(str, problems)))
        path = self.directory.write(document)
        tracking = document["document"]["tracking"]
        files.atomic_write_json(self.meta_path(tracking_id), {
            "tracking_id": tracking_id, "version": int(tracking["version"]),
            "initial_release_date": tracking["initial_release_date"],
            "history": tracking["revision_history"]}, indent=None)
        self.pending[tracking_id] = 0
        return Written(tracking_id, int(tracking["version"]), path, events)

    # --- retractions (docs/retraction.md) ------------------------------------------------
    def retract(self, retraction: policy.Retraction) -> List[Retracted]:
        """Apply ``retraction`` to every advisory that holds its target.

        Per spooled event it names (:func:`_holds`), the policy's
        :func:`~intelmq_crossborder.policy.retraction.instruction` under ``max_level``: a relabel
        within it raises the event's ``sharing.tlp`` (the advisory's TLP follows, and the
        advisory moves to the more restrictive folder); a withdraw, an erase, a relabel above
        it, and a relabel that hides the source (the advisory's id may be the source's) take the
        event out.  The spool file is rewritten atomically without the removed events (an erased
        value is nowhere in the state folder afterwards), then the advisory is written as its
        next revision, or, with no event left, withdrawn (:func:`withdrawn_advisory`)."""
        done: List[Retracted] = []
        if not os.path.isdir(self.state_dir):
            return done
        for name in sorted(os.listdir(self.state_dir)):
            if not name.endswith(".jsonl"):
                continue
            path = os.path.join(self.state_dir, name)
            events = self._read(path)
            if not any(_holds(retraction, e) for e in events):
                continue
            meta = inputs.read_json(path[:-len(".jsonl")] + ".meta.json", what="CSAF spool state") \
                if os.path.exists(path[:-len(".jsonl")] + ".meta.json") else {}
            tracking_id = meta.get("tracking_id") if isinstance(meta.get("tracking_id"), str) else \
                self._group_id(events[0])
            was = events_tlp(events)
            keep: List[dict] = []
            removed = relabelled = 0
            for event in events:
                if not _holds(retraction, event):
                    keep.append(event)
                    continue
                held = events_tlp([event])
                what = policy.instruction(retraction, event_uuid=retraction.target_event_uuid,
                                          fingerprint=retraction.target_fingerprint, level=held,
                                          ceiling=self.max_level)
                if what == policy.RELABEL and not retraction.new_do_not_disclose_source:
                    event = dict(event)
                    event["sharing.tlp"] = retraction.new_level(held).label
                    keep.append(event)
                    relabelled += 1
                else:
                    removed += 1
            if keep:
                files.atomic_write(path, b"".join((json.dumps(e, sort_keys=True) + "\n").encode("utf-8")
                                                  for e in keep))
                version = meta.get("version", 0) + 1
                what = (f"{removed} event(s) {'erased' if retraction.action == 'erase' else 'withdrawn'}"
                        if removed else "") + (", " if removed and relabelled else "") + \
                    (f"{relabelled} event(s) relabelled" if relabelled else "")
                written = self.write(tracking_id, summary=f"Update {version}: {what} (retraction {retraction.id}).")
            else:
                os.unlink(path)
                version = meta.get("version", 0) + 1
                document = withdrawn_advisory(
                    tracking_id=tracking_id, publisher=self.publisher, level=was, version=version,
                    initial_release_date=meta.get("initial_release_date"), history=meta.get("history"),
                    reason=f"Every event of this advisory was retracted by its originator (retraction "
                           f"{retraction.id}, {retraction.action}); its content must no longer be used.")
                written = self._publish(tracking_id, document, 0)
                self.pending.pop(tracking_id, None)
            done.append(Retracted(tracking_id, written.version, written.path, removed, relabelled, not keep))
        return done

    def flush(self) -> List[Written]:
        """Write every advisory with spooled events not written yet (at shutdown)."""
        return [self.write(tracking_id) for tracking_id, count in list(self.pending.items()) if count]


def _ends_with(path: str, line: bytes) -> bool:
    """Whether the file at ``path`` ends with ``line`` (False when there is no file)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size < len(line):
                return False
            fh.seek(size - len(line))
            return fh.read() == line
    except FileNotFoundError:
        return False
