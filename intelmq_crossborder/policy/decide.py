"""The share decision: THE place where an agreement is applied to an event.

:func:`decide` applies an agreement (:mod:`intelmq_crossborder.policy.agreements`) to one
event (a flat IntelMQ dict, or an IntelMQ ``Event``) and returns a :class:`Decision`:
allowed or denied, every reason, and the event as transformed for that recipient.
:func:`decide_all` and :class:`PolicySet` decide one event for many recipients.  The rules:

- The event's TLP is what :func:`intelmq_crossborder.core.tlp.event_tlp` reads, and
  nothing else: the most restrictive label in any field, ``sharing.tlp``
  included.  No label at all: the agreement's ``no_label`` rule (default
  ``deny``: not shared beyond the hub).  Anything label-like that cannot be
  read: denied for every recipient (``tlp-unreadable``, naming the field).
- TLP:RED is never forwarded automatically.  AMBER+STRICT goes only to the
  same organisation, AMBER to the organisation and its constituents, GREEN to
  the community, CLEAR to anyone the agreement admits:
  :func:`intelmq_crossborder.policy.agreements.tlp_ceiling`.
- Then taxonomy, type, country of origin, PAP and the loop rule (a hub never
  gets back an event that already passed through it).
- The copy for the recipient: fields removed, fields pseudonymised with
  HMAC-SHA256, the fields that name or point at the originator
  (:data:`intelmq_crossborder.core.tlp.SOURCE_FIELDS` plus the agreement's
  ``originator_fields``) hidden when the source must not be disclosed (by the
  event or the agreement), ``raw`` dropped, ``sharing.tlp``,
  ``sharing.agreement`` and ``sharing.retention_days`` set.  The pseudonyms and
  derived ids are :mod:`intelmq_crossborder.policy.redact`'s.

The functions are pure: no IntelMQ bot, no Redis, no logging.  Reasons name
fields and quote only labels and classification values (TLP, PAP, taxonomy, type,
country of origin), never other values such as addresses or accounts: they go to
logs and the audit trail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.policy.audit import encode_decision
from intelmq_crossborder.policy.agreements import PAP_LEVELS, Agreement, tlp_ceiling
from intelmq_crossborder.policy.redact import (LABEL_CARRYING, field_type, holds_pseudonym, originator_names, pseudonym,
                                              rederive_ids)

__all__ = ["Decision", "Decisions", "EventFacts", "event_facts", "decide", "decide_all", "parse_pap", "PolicySet",
           "label_denials"]

_PAP_ORDER = {name: i for i, name in enumerate(PAP_LEVELS)}


def parse_pap(value: Any) -> str:
    """Canonical PAP 2.0 label (CLEAR/GREEN/AMBER/RED) of ``PAP:AMBER``, ``white``...; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"unknown PAP label {value!r}")
    text = value.strip().upper()
    if text.startswith("PAP:"):
        text = text[4:].strip()
    if text == "WHITE":
        text = "CLEAR"
    if text not in _PAP_ORDER:
        raise ValueError(f"unknown PAP label {value!r}")
    return text


_LABELS = {lvl: lvl.label for lvl in Level}


@dataclass(frozen=True)
class EventFacts:
    """What the rules need to know about an event, computed once for all recipients (and the
    key of :class:`PolicySet`'s cache, so it holds no per-event data)."""

    level: Optional[Level]          # None: no label (or unreadable)
    level_from: str                 # 'sharing.tlp', 'labels', 'none', 'unreadable'
    tlp_error: Optional[str] = None
    chatham_house: bool = False     # the source must be hidden (the event's flag or tlp:ex:chr)
    pap: Optional[str] = None
    pap_error: Optional[str] = None
    hubs: frozenset = frozenset()
    tlp_error_field: Optional[str] = None     # the field holding the unreadable label
    tlp_error_value: Any = None               # and its value (a label, cut to 200 characters)


def event_facts(event: Mapping[str, Any]) -> EventFacts:
    """The event's TLP and hide flag (:func:`intelmq_crossborder.core.tlp.event_tlp`, called once),
    PAP and the hubs it passed through."""
    level, level_from, err, err_field, err_value, hide = None, "none", None, None, None, False
    try:
        labels = tlp.event_tlp(event)
    except tlp.LabelError as exc:
        level_from, err, err_field = "unreadable", str(exc), exc.field
        if len(err) > 300:          # it quotes the refused value: logs and the audit trail get a bounded line
            err = err[:300] + "..."
        err_value = None if exc.value is None else str(exc.value)[:200]
    else:
        hide = labels.hide_source
        level = labels.level
        if level is not None:
            label = level.label
            level_from = "sharing.tlp" if ("sharing.tlp", label) in labels.found else "labels"
    get = event.get
    pap, pap_err = get("sharing.pap"), None
    if pap is not None and pap != "":
        try:
            pap = parse_pap(pap)
        except ValueError as exc:
            pap, pap_err = None, str(exc)[:200]
    else:
        pap = None
    hubs = set()
    path = get("provenance.hub_path")
    # compared as the agreement's hub_id is written (white space and case never hide a hub)
    if isinstance(path, str) and path:
        hubs.update(h.strip().lower() for h in path.split(",") if h.strip())
    origin_hub = get("provenance.origin_hub")
    if isinstance(origin_hub, str) and origin_hub.strip():
        hubs.add(origin_hub.strip().lower())
    return EventFacts(level, level_from, err, hide, pap, pap_err, frozenset(hubs), err_field, err_value)


@dataclass
class Decision:
    """Outcome of :func:`decide` for one (event, recipient)."""

    allowed: bool
    reasons: list
    event_out: Optional[dict] = None
    recipient: Optional[str] = None

    @property
    def codes(self) -> list:
        """The reason codes (the text before the first colon), for counting."""
        return [r.split(":", 1)[0] for r in self.reasons]

    def to_json(self) -> dict:
        return {"recipient": self.recipient, "allowed": self.allowed, "reasons": list(self.reasons),
                "event_out": self.event_out}


def _deny_reasons(facts: EventFacts, event: Mapping[str, Any], a: Agreement,
                  hmac_key: Optional[bytes]) -> tuple:
    """(reasons for denial, effective level)."""
    reasons = []
    level = facts.level
    ceiling = a._ceiling if a._ceiling is not None else tlp_ceiling(a)
    if facts.tlp_error is not None:
        reasons.append(f"tlp-unreadable: {facts.tlp_error}")
    elif level is None:
        if a.no_label is None:
            reasons.append("tlp-missing: the event has no TLP label and the agreement's no_label rule is "
                           "deny (not shared beyond the hub)")
        else:
            level = a.no_label
    if level is not None:
        if level is Level.RED:
            reasons.append("tlp-red: TLP:RED is never forwarded automatically")
        elif level is Level.AMBER_STRICT and a.relation != "same-organisation":
            reasons.append(f"tlp-amber-strict: TLP:AMBER+STRICT goes only to the same organisation, "
                           f"the recipient is {a.relation}")
        elif level > ceiling:
            reasons.append(f"tlp-above-ceiling: TLP:{level.label} is above what the agreement admits "
                           f"(TLP:{ceiling.label})")
    if a._taxonomies is not None:
        taxonomy = event.get("classification.taxonomy")
        if taxonomy not in a._taxonomies:
            what = f"classification.taxonomy {taxonomy!r} is" if taxonomy else "the event has no classification.taxonomy,"
            reasons.append(f"taxonomy-not-allowed: {what} not in the agreement's taxonomies")
    if a._types is not None:
        ctype = event.get("classification.type")
        if ctype not in a._types:
            what = f"classification.type {ctype!r} is" if ctype else "the event has no classification.type,"
            reasons.append(f"type-not-allowed: {what} not in the agreement's types")
    if a._countries is not None:
        country = event.get("provenance.origin_country")
        if not country:
            if a.unknown_origin != "allow":
                reasons.append("origin-unknown: the event has no provenance.origin_country and the agreement "
                               "restricts origin countries")
        elif country not in a._countries:
            reasons.append(f"origin-not-allowed: provenance.origin_country {country!r} is not in the "
                           "agreement's origin_countries")
    if a.max_pap is not None:
        if facts.pap_error is not None:
            reasons.append(f"pap-unreadable: {facts.pap_error} in field sharing.pap")
        elif facts.pap is None:
            if a.missing_pap == "deny":
                reasons.append("pap-missing: the event has no sharing.pap and the agreement denies that")
        elif _PAP_ORDER[facts.pap] > _PAP_ORDER[a.max_pap]:
            reasons.append(f"pap-above-limit: PAP:{facts.pap} is above the agreement's max_pap "
                           f"PAP:{a.max_pap}")
    if a.hub_id is not None and a.hub_id in facts.hubs:
        reasons.append(f"loop: the event already passed through hub {a.hub_id!r}")
    if not a.enabled:
        reasons.append("disabled: the agreement is disabled")
    hide_by_pseudonym = (not a.disclose_source or facts.chatham_house) and a.hide_source == "pseudonymise"
    if (a.pseudonymise_fields or hide_by_pseudonym) and not hmac_key:
        reasons.append("key-missing: the agreement pseudonymises fields and no HMAC key is configured")
    return reasons, level


def label_denials(agreement: Agreement, level: Optional[Level], pap: Optional[str] = None) -> list:
    """The denials of ``agreement`` that depend only on an event's labels (TLP, PAP): the rules
    of :func:`decide`, applied to a copy a recipient already holds when a retraction relabels
    it (:mod:`intelmq_crossborder.policy.retraction`); the other rules (taxonomy, country, loop)
    were passed when the copy was sent."""
    facts = EventFacts(level, "labels" if level is not None else "none", pap=pap)
    reasons, _ = _deny_reasons(facts, {}, agreement, b"-")
    return [r for r in reasons if r.startswith(("tlp-", "pap-", "disabled"))]


def decide(event: Mapping[str, Any], agreement: Agreement, *, hmac_key: Optional[bytes] = None,
           facts: Optional[EventFacts] = None) -> Decision:
    """Allow or deny one event for one recipient, with every reason, and the copy to send.

    ``event`` is a flat IntelMQ dict (``"source.ip": ...``) or an IntelMQ Event;
    it is not modified.  ``facts`` may be passed when deciding the same event for
    many recipients (see :func:`decide_all`).
    """
    if facts is None:
        facts = event_facts(event)
    reasons, level = _deny_reasons(facts, event, agreement, hmac_key)
    if reasons:
        return Decision(False, reasons, None, agreement.recipient)
    return _allow(event, agreement, facts, level, hmac_key)


_HOW = {"sharing.tlp": "", "labels": " (from the event's labels)",
        "none": " (no label: the agreement's no_label rule)"}


_ALLOWED_TEXT: dict = {}


def _allowed_text(agreement: Agreement, level: Level, level_from: str) -> str:
    key = (agreement.recipient, agreement.relation, agreement._ceiling, level, level_from)
    text = _ALLOWED_TEXT.get(key)
    if text is None:
        ceiling = agreement._ceiling if agreement._ceiling is not None else tlp_ceiling(agreement)
        text = (f"allowed: TLP:{level.label}{_HOW[level_from]} within TLP:{ceiling.label} "
                f"({agreement.relation})")
        if len(_ALLOWED_TEXT) > 4096:
            _ALLOWED_TEXT.clear()
        _ALLOWED_TEXT[key] = text
    return text


def _allow(event, agreement: Agreement, facts: EventFacts, level: Level, hmac_key) -> Decision:
    """The copy for the recipient and the reasons, through the same :class:`_FieldPlan` that
    :meth:`PolicySet.decide` caches (one implementation of the copy)."""
    plan = _FieldPlan(tuple(event.keys()), agreement, (not agreement.disclose_source) or facts.chatham_house)
    return _allow_planned(event, agreement, plan, facts, level, hmac_key)


def decide_all(event: Mapping[str, Any], agreements: Iterable[Agreement], *,
               hmac_key: Optional[bytes] = None) -> list:
    """:func:`decide` for each agreement, computing the event's facts once."""
    facts = event_facts(event)
    return [decide(event, a, hmac_key=hmac_key, facts=facts) for a in agreements]


class _FieldPlan:
    """The copy of an event with given field names (in that order) for one agreement, worked out
    once per set of names (:meth:`PolicySet.decide` caches it). Precedence per field: remove, then
    pseudonymise, then the originator rule (a field already pseudonymised is not touched again).
    A field that carries a label is removed where it would be pseudonymised: the copy carries the
    effective label in ``sharing.tlp``. Only the values, the derived ``provenance.event_uuid`` and
    the fingerprint are left for each event (:func:`_allow_planned`)."""

    __slots__ = ("delete", "pseudonymise", "touched", "orig_names", "raw", "keep_raw", "removed", "pseudonymised",
                 "texts", "parts")

    def __init__(self, keys: tuple, a: Agreement, hide: bool):
        out = dict.fromkeys(keys)
        removed, pseudonymised, pseudos = [], [], []
        rm, ps, orig = a._remove, a._pseudo, a._originator
        for name in rm.exact:
            if name in out:
                del out[name]
                removed.append(name)
        if rm.prefixes:
            for name in [k for k in out if k.startswith(rm.prefixes)]:
                del out[name]
                removed.append(name)
        if ps:
            names = [n for n in ps.exact if n in out]
            if ps.prefixes:
                names += [k for k in out if k.startswith(ps.prefixes) and k not in ps.exact]
            for name in names:
                if name in LABEL_CARRYING:
                    del out[name]
                    removed.append(name)
                else:
                    pseudos.append((name, field_type(name)))
                    pseudonymised.append(name)
        if hide:
            names = originator_names(list(out), orig).difference(pseudonymised)
            for name in sorted(names):
                if a.hide_source == "pseudonymise" and holds_pseudonym(name):
                    pseudos.append((name, field_type(name)))
                    pseudonymised.append(name)
                else:
                    del out[name]
                    removed.append(name)
        self.delete = tuple(removed)
        self.pseudonymise = tuple(pseudos)
        self.touched = tuple(removed + pseudonymised)
        self.orig_names = originator_names(keys, orig) if hide else None
        self.raw = "raw" in out
        self.keep_raw = a.keep_raw
        self.removed, self.pseudonymised = removed, pseudonymised
        self.texts: dict = {}
        self.parts: dict = {}          # reasons -> audit entry (encode_decision)

    def audit_part(self, d: Decision) -> str:
        key = tuple(d.reasons)
        part = self.parts.get(key)
        if part is None:
            if len(self.parts) > 64:
                self.parts.clear()
            part = self.parts[key] = encode_decision(d.recipient, True, key)
        return part

    def reasons(self, raw_dropped: bool, derived: bool) -> tuple:
        """The ``removed:``/``pseudonymised:`` reasons of :func:`_allow` (cached)."""
        texts = self.texts.get((raw_dropped, derived))
        if texts is None:
            removed = self.removed + ["raw"] if raw_dropped else self.removed
            pseudonymised = self.pseudonymised + ["provenance.event_uuid"] if derived else self.pseudonymised
            texts = ((("removed: " + ", ".join(sorted(removed)),) if removed else ())
                     + (("pseudonymised: " + ", ".join(sorted(pseudonymised)),) if pseudonymised else ()))
            self.texts[(raw_dropped, derived)] = texts
        return texts


def _allow_planned(event: Mapping[str, Any], a: Agreement, plan: _FieldPlan, facts: EventFacts, level: Level,
                   hmac_key: Optional[bytes]) -> Decision:
    """:func:`_allow` (same copy, same reasons) from a :class:`_FieldPlan` of the event's names."""
    out = dict(event)
    for name in plan.delete:
        del out[name]
    for name, ftype in plan.pseudonymise:
        out[name] = pseudonym(out[name], hmac_key, ftype)
    derived = rederive_ids(out, event, plan.touched, hmac_key, a._originator if plan.orig_names is not None else None,
                           plan.orig_names)
    raw_dropped = plan.raw and (not plan.keep_raw or bool(plan.touched) or derived)
    if raw_dropped:
        del out["raw"]
    out["sharing.tlp"] = _LABELS[level]
    out["sharing.agreement"] = a.recipient
    if a.retention_days is not None:
        out["sharing.retention_days"] = a.retention_days
    if facts.chatham_house:
        out[tlp.HIDE_SOURCE_FIELD] = True
    reasons = [_allowed_text(a, level, facts.level_from)]
    reasons.extend(plan.reasons(raw_dropped, derived))
    return Decision(True, reasons, out, a.recipient)


class Decisions(list):
    """The :class:`Decision` of each agreement, in the agreements' order, as
    :meth:`PolicySet.decide` returns them, with ``audit_parts`` (each decision encoded for
    :meth:`intelmq_crossborder.policy.audit.AuditTrail.write_decisions`) and ``denials``
    (``(recipient, reason codes)`` of each denial: the same object for every event that
    got the same denials, to count them by)."""

    __slots__ = ("audit_parts", "denials")


class _Plan:
    """The allow/deny part of the decisions for one combination of facts (see :class:`PolicySet`)."""

    __slots__ = ("decisions", "allowed", "parts", "denials")

    def __init__(self, entries: list, shared: Optional[tuple] = None):
        # entries: (index, agreement, cached denial or None, effective level)
        self.decisions = [denial for _, _, denial, _ in entries]      # None where allowed
        self.allowed = [(i, a, level) for i, a, denial, level in entries if denial is None]
        if shared is not None:          # (parts, denials) of a plan with the same denials
            self.parts, self.denials = shared
            return
        self.parts = [None if denial is None else encode_decision(denial.recipient, False, denial.reasons)
                      for _, _, denial, _ in entries]
        self.denials = tuple((denial.recipient, tuple(denial.codes)) for _, _, denial, _ in entries
                             if denial is not None)


class PolicySet:
    """A set of agreements and a key, deciding an event for every recipient at once.

    Same results as :func:`decide` for each agreement (a test holds it to that),
    faster: the allow/deny part of a decision depends only on the event's
    :class:`EventFacts`, classification and country of origin, so it is computed
    once per such combination and cached (bounded), as are the field steps of a
    copy per agreement and set of field names (:class:`_FieldPlan`); only the copies
    for the permitted recipients are built per event.  The sharing router uses it.
    """

    def __init__(self, agreements: Iterable[Agreement], hmac_key: Optional[bytes] = None,
                 cache_size: int = 4096):
        self.agreements = list(agreements)
        self.hmac_key = hmac_key
        self.cache_size = cache_size
        self._cache: dict = {}
        self._fields: dict = {}        # (field names, hide flag) -> {agreement index: _FieldPlan}
        self._denials: dict = {}       # (agreement index, reasons) -> the one Decision of that denial
        self._shared: dict = {}        # the denials' keys of a plan -> (_Plan.parts, _Plan.denials)

    def _plan(self, event: Mapping[str, Any], facts: EventFacts) -> _Plan:
        get = event.get
        key = (facts, get("classification.taxonomy"), get("classification.type"), get("provenance.origin_country"))
        plan = self._cache.get(key)
        if plan is None:
            entries, keys = [], []
            denials = self._denials
            if len(denials) >= 8 * self.cache_size:
                denials.clear()
                self._shared.clear()
            for i, a in enumerate(self.agreements):
                reasons, level = _deny_reasons(facts, event, a, self.hmac_key)
                denial = None
                if reasons:
                    # many combinations of facts give an agreement the same denial: one object each
                    dkey = (i, *reasons)
                    keys.append(dkey)
                    denial = denials.get(dkey)
                    if denial is None:
                        denial = denials[dkey] = Decision(False, reasons, None, a.recipient)
                entries.append((i, a, denial, level))
            # ... and many give the same set of denials: their audit entries and counts are shared too
            shared = self._shared.get(tuple(keys))
            plan = _Plan(entries, shared)
            if shared is None:
                self._shared[tuple(keys)] = (plan.parts, plan.denials)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = plan
        return plan

    def decide(self, event: Mapping[str, Any], facts: Optional[EventFacts] = None) -> Decisions:
        """One :class:`Decision` per agreement, in the agreements' order (a :class:`Decisions`).

        ``facts``: :func:`event_facts` of this event, when the caller already has them.
        Denials are shared, cached objects: read them, do not modify them.
        """
        if facts is None:
            facts = event_facts(event)
        key = self.hmac_key
        names = (tuple(event), facts.chatham_house)
        fields = self._fields.get(names)
        if fields is None:
            if len(self._fields) >= self.cache_size:
                self._fields.clear()
            fields = self._fields[names] = {}
        plan = self._plan(event, facts)
        out = Decisions(plan.decisions)
        parts = out.audit_parts = plan.parts.copy()
        out.denials = plan.denials
        for i, a, level in plan.allowed:
            fplan = fields.get(i)
            if fplan is None:
                fplan = fields[i] = _FieldPlan(names[0], a, (not a.disclose_source) or facts.chatham_house)
            d = out[i] = _allow_planned(event, a, fplan, facts, level, key)
            parts[i] = fplan.audit_part(d)
        return out
