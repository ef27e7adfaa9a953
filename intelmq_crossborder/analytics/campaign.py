"""Campaign correlation: events of several hubs and countries that share infrastructure.

Two events are linked when they share an *infrastructure key* (:data:`KEY_KINDS`):

``net``
    the source network: the /24 of an IPv4 ``source.ip`` together with its ``source.asn``
    when the event has one (``AS64500 185.220.101.0/24``), or the /48 of an IPv6 address.
    Addresses that are not globally routable (RFC 1918, documentation, loopback...) never link.
``domain``
    the registered domain of ``source.fqdn`` (else of the host of ``source.url``), by the
    Public Suffix List of the ``publicsuffixlist`` package (offline):
    ``a.evil.example.co.uk`` and ``b.evil.example.co.uk`` share ``example.co.uk``.
``hash``
    ``malware.hash.sha256``, ``.sha1``, ``.md5``.
``cve``
    every CVE id in ``product.vulnerabilities`` or ``extra.cve``.
``family``
    ``malware.name`` (case and spacing folded).

Clusters are built incrementally over the keys (union-find: an event unites the keys it
carries) inside a sliding ``window`` of event time.  Links expire: every ``window / 16`` the
structure is rebuilt from the keys and links still inside the window, and memory is bounded
by ``max_keys`` (the least recently seen keys go first, counted in ``evicted``; links: ``8 x
max_keys``, the oldest first, ``evicted_links``).

**Background keys link nothing.**  A key first seen more than ``common_after`` seconds ago
(two days by default; remembered for ``4 x max_keys`` keys beyond the window) is background:
the malware families, CVEs, networks and domains every country reports every day.  Campaign
infrastructure is new; without this rule ``family:mirai`` would tie every country's infected
systems into one permanent cluster.  A campaign that lasts longer keeps its id, but its keys
stop linking new events after ``common_after``.  Clusters that already span the countries in
the first ``warmup`` seconds (three days by default) are the background the detector starts
in: they raise no alert and give no id.

A cluster whose events in the window come from at least ``min_countries`` countries or
``min_hubs`` hubs becomes a **campaign**: it gets a stable id (``campaign_id``; kept when
the cluster grows, merges or is rebuilt: the older campaign's id wins) and raises one
:class:`~intelmq_crossborder.analytics.alerts.Alert` of kind ``campaign``.  Events of the
campaign get its id (:meth:`CampaignDetector.assign`, the analytics expert writes it to
``extra.campaign_id``).

TLP (docs/tlp.md): an event's level is read by :func:`intelmq_crossborder.core.tlp.event_tlp`
only (``early_warning.read_level``).  Events above ``max_tlp`` do not count, do not link and
do not appear; an event without a label counts as ``default_tlp``.  A campaign's TLP is the
most restrictive level of the events in its cluster (a link counts: an AMBER event that joins
two GREEN clusters makes the campaign AMBER), and an event gets the campaign's id only when
its own level is at least the campaign's: a recipient of a GREEN event never learns a fact
built from AMBER events.  Events whose source is hidden count, but their hub and country are
never named (they are ``undisclosed`` in the alert).  Alerts carry no indicator.
"""
from __future__ import annotations

import functools
import hmac
import ipaddress
import math
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.analytics.alerts import Alert, EventError, StateError, event_time, want
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.parameters import as_list, is_unset, optional

__all__ = ["KEY_KINDS", "infrastructure_keys", "CampaignSettings", "parameter_problems", "CampaignDetector",
           "campaign"]

NAME = "campaign"
STATE_VERSION = 1
KEY_KINDS = ("net", "domain", "hash", "cve", "family")
_HASH_FIELDS = (("malware.hash.sha256", 64), ("malware.hash.sha1", 40), ("malware.hash.md5", 32))
_HEX = re.compile(r"[0-9a-f]+")
_CVE = re.compile(r"CVE-\d{4}-\d{4,9}", re.IGNORECASE)
_CC = re.compile(r"[A-Z]{2}")
MAX_KEY_CHARS = 256           # a longer value is cut (the key stays distinct through its start)
MAX_KEYS_PER_EVENT = 16
MAX_MEMBERS = 512             # distinct (hub, country, level, hidden, pap) per key and per cluster
REBUILDS_PER_WINDOW = 16
HISTORY_FACTOR = 4            # sightings remembered: this many times max_keys
EDGE_FACTOR = 8               # links kept: this many times max_keys
#: parameters the analytics expert gives every detector under one name
SHARED_PARAMETERS = ("max_tlp", "default_tlp", "max_ahead")

_PSL = None


def _psl():
    global _PSL
    if _PSL is None:
        from publicsuffixlist import PublicSuffixList     # the list shipped with the package: offline
        _PSL = PublicSuffixList()
    return _PSL


def _text(event: Mapping[str, Any], name: str) -> Optional[str]:
    value = event.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventError(name, f"a text expected, not {inputs.kind_of(value)}")
    value = value.strip()
    return value or None


#: IPv4 networks that are not globally routable (ipaddress's is_global, precomputed: that property
#: walks a list of networks per call and cost a third of the detector's time)
_V4_NOT_GLOBAL = tuple((int(n.network_address), int(n.netmask)) for n in map(ipaddress.IPv4Network, (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")))
_V4_GLOBAL_EXCEPTIONS = (int(ipaddress.IPv4Address("192.0.0.9")), int(ipaddress.IPv4Address("192.0.0.10")))


#: first octets with a network that is not global (a quick pass for the others)
_V4_SUSPECT = frozenset(octet for net, mask in _V4_NOT_GLOBAL
                        for octet in range(net >> 24, ((net | (~mask & 0xFFFFFFFF)) >> 24) + 1))


def _v4(text: str) -> Optional[int]:
    """The integer of a dotted-quad IPv4 address in its plain form, or None (anything else)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value * 256 + octet
    return value


def _net_key(event: Mapping[str, Any]) -> Optional[str]:
    ip = _text(event, "source.ip")
    if ip is None:
        return None
    number = _v4(ip)
    if number is not None:
        if (number >> 24) in _V4_SUSPECT and number not in _V4_GLOBAL_EXCEPTIONS \
                and any(number & mask == net for net, mask in _V4_NOT_GLOBAL):
            return None
        net = f"{number >> 24}.{(number >> 16) & 255}.{(number >> 8) & 255}.0/24"
    else:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise EventError("source.ip", f"not an IP address: {ip[:80]!r}") from None
        if not address.is_global:
            return None
        if address.version == 6:
            return str(ipaddress.IPv6Network((address, 48), strict=False))
        net = str(ipaddress.IPv4Network((address, 24), strict=False))
    asn = event.get("source.asn")
    if asn is None or asn == "":
        return net
    if isinstance(asn, bool) or not isinstance(asn, (int, str)):
        raise EventError("source.asn", f"an AS number expected, not {inputs.kind_of(asn)}")
    text = str(asn).strip().upper().removeprefix("AS")
    if not text.isdigit() or len(text) > 10 or int(text) > 4294967295:
        raise EventError("source.asn", f"not an AS number: {str(asn)[:40]!r}")
    return f"AS{int(text)} {net}"


@functools.lru_cache(maxsize=65536)
def registered_domain(host: str) -> Optional[str]:
    """The registered domain of a host name by the Public Suffix List, or None (an IP address,
    a public suffix itself, a name that is not a DNS name).  Non-ASCII names are compared in
    their IDNA (``xn--``) form, so a look-alike spelling is a different domain, never the same."""
    host = host.strip().rstrip(".").lower()
    if not host or len(host) > 253:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if any(not label or len(label) > 63 for label in host.split(".")) or "." not in host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    return _psl().privatesuffix(host)


def _domain_key(event: Mapping[str, Any]) -> Optional[str]:
    fqdn = _text(event, "source.fqdn")
    if fqdn is None:
        url = _text(event, "source.url")
        if url is None:
            return None
        try:
            fqdn = urlsplit(url if "//" in url else "//" + url).hostname
        except ValueError:
            raise EventError("source.url", "not a URL") from None
        if not fqdn:
            return None
    return registered_domain(fqdn)


def infrastructure_keys(event: Mapping[str, Any], kinds: Iterable[str] = KEY_KINDS) -> List[str]:
    """The event's infrastructure keys, ``"kind:value"``, in the order of ``kinds``.
    :class:`EventError` names a field of the wrong type or an unreadable IP address or hash."""
    keys: List[str] = []
    for kind in kinds:
        if kind == "net":
            value = _net_key(event)
            if value:
                keys.append("net:" + value)
        elif kind == "domain":
            value = _domain_key(event)
            if value:
                keys.append("domain:" + value)
        elif kind == "hash":
            for name, length in _HASH_FIELDS:
                value = _text(event, name)
                if value is None:
                    continue
                value = value.lower()
                if len(value) != length or not _HEX.fullmatch(value):
                    raise EventError(name, f"not a hash of {length} hexadecimal digits")
                keys.append(f"hash:{value}")
        elif kind == "cve":
            for name in ("product.vulnerabilities", "extra.cve"):
                value = event.get(name)
                if value is None or value == "":
                    continue
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if not isinstance(item, str):
                        raise EventError(name, f"CVE ids as a text or a list of texts, not {inputs.kind_of(item)}")
                    for cve in _CVE.findall(item[:4096]):
                        keys.append("cve:" + cve.upper())
        elif kind == "family":
            value = _text(event, "malware.name")
            if value:
                keys.append("family:" + " ".join(value.lower().split()))
        else:
            raise ValueError(f"unknown key kind {kind!r} (known: {', '.join(KEY_KINDS)})")
    out = []
    for key in keys:
        key = key[:MAX_KEY_CHARS]
        if key not in out:
            out.append(key)
    return out[:MAX_KEYS_PER_EVENT]


# --- parameters -----------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignSettings:
    """The campaign detector's parameters, read as IntelMQ Manager saves them ('' is unset)."""

    window: int = 86400
    min_countries: int = 2
    min_hubs: int = 2
    link_keys: Tuple[str, ...] = KEY_KINDS
    max_level: tlp.Level = tlp.Level.AMBER
    default_level: tlp.Level = tlp.Level.RED
    max_keys: int = 100_000
    warmup: int = 3 * 86400
    common_after: int = 2 * 86400
    max_ahead: int = 3600

    @classmethod
    def from_parameters(cls, params: Optional[Mapping[str, Any]]) -> "CampaignSettings":
        """ValueError naming the first problem (:func:`parameter_problems`)."""
        params = params or {}
        errors = [text for level, text in parameter_problems(params) if level == "error"]
        if errors:
            raise ValueError(errors[0])
        d = cls()
        keys = params.get("link_keys")
        return cls(window=_int(params, "window", d.window), min_countries=_int(params, "min_countries", d.min_countries),
                   min_hubs=_int(params, "min_hubs", d.min_hubs),
                   link_keys=d.link_keys if is_unset(keys) else tuple(as_list(keys)),
                   max_level=tlp.parse_level(optional(params.get("max_tlp"), d.max_level.label)),
                   default_level=tlp.parse_level(optional(params.get("default_tlp"), d.default_level.label)),
                   max_keys=_int(params, "max_keys", d.max_keys), warmup=_int(params, "warmup", d.warmup),
                   common_after=_int(params, "common_after", d.common_after),
                   max_ahead=_int(params, "max_ahead", d.max_ahead))

    def as_parameters(self) -> dict:
        return {"window": self.window, "min_countries": self.min_countries, "min_hubs": self.min_hubs,
                "link_keys": list(self.link_keys), "max_tlp": self.max_level.label,
                "default_tlp": self.default_level.label, "max_keys": self.max_keys, "warmup": self.warmup,
                "common_after": self.common_after, "max_ahead": self.max_ahead}


def _int(params: Mapping[str, Any], name: str, default: int) -> Any:
    """An integer parameter ('' and None: the default; "30" as the Manager saves it: 30), or the
    value as given when it is not one, for :func:`parameter_problems` to name."""
    value = optional(params.get(name), default)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parameter_problems(params: Mapping[str, Any], prefix: str = "") -> List[list]:
    """``[level, text]`` per problem of the campaign parameters (IntelMQ's ``check()`` form).
    ``prefix`` is put before each parameter name the detector has alone (the analytics
    expert's ``campaign_``), not before :data:`SHARED_PARAMETERS`."""
    d = CampaignSettings()
    out: List[list] = []
    prefix_of = (lambda name: "" if name in SHARED_PARAMETERS else prefix)  # noqa: E731

    def is_int(value: Any, minimum: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= 10 ** 9

    for name, minimum, what in (("window", 60, "a number of seconds >= 60"),
                                ("min_countries", 0, "an integer >= 0 (0 turns it off)"),
                                ("min_hubs", 0, "an integer >= 0 (0 turns it off)"),
                                ("max_keys", 100, "an integer >= 100"),
                                ("warmup", 0, "a number of seconds >= 0"),
                                ("common_after", 0, "a number of seconds >= 0 (0 turns it off)"),
                                ("max_ahead", 0, "a number of seconds >= 0")):
        if not is_int(_int(params, name, getattr(d, name)), minimum):
            out.append(["error", f"Parameter {prefix_of(name)}{name} must be {what}."])
    countries, hubs = _int(params, "min_countries", d.min_countries), _int(params, "min_hubs", d.min_hubs)
    if countries == 0 and hubs == 0:
        out.append(["error", f"Parameters {prefix}min_countries and {prefix}min_hubs are both 0: no cluster "
                             "could ever be a campaign."])
    elif countries == 1 or hubs == 1:
        out.append(["warning", f"{prefix}min_countries or {prefix}min_hubs is 1: every cluster is a campaign, "
                               "not only cross-border ones."])
    keys = params.get("link_keys")
    if not is_unset(keys):
        try:
            items = as_list(keys)
        except ValueError:
            items = None
        if not items or not all(isinstance(i, str) and i in KEY_KINDS for i in items):
            out.append(["error", f"Parameter {prefix}link_keys must be a non-empty list of "
                                 f"{', '.join(KEY_KINDS)}."])
    for name, default in (("max_tlp", d.max_level.label), ("default_tlp", d.default_level.label)):
        try:
            level = tlp.parse_level(optional(params.get(name), default), f"parameter {prefix_of(name)}{name}")
            if name == "max_tlp" and level >= tlp.Level.AMBER_STRICT:
                out.append(["error", f"Parameter max_tlp: TLP:{level.label} cannot go to EU-CyCLONe or "
                                     "the CSIRTs Network automatically; use AMBER or lower."])
        except (tlp.UnknownTLPError, TypeError, AttributeError):
            out.append(["error", f"Parameter {prefix_of(name)}{name} must be a TLP label "
                                 "(CLEAR, GREEN, AMBER, AMBER+STRICT, RED)."])
    return out


# --- the structure ----------------------------------------------------------------------

def _country(event: Mapping[str, Any]) -> Optional[str]:
    """The country of the activity: ``source.geolocation.cc``, else the reporting hub's
    ``provenance.origin_country``."""
    for name in ("source.geolocation.cc", "provenance.origin_country"):
        value = _text(event, name)
        if value is not None:
            value = value.upper()
            if not _CC.fullmatch(value):
                raise EventError(name, f"not a two-letter country code: {value[:20]!r}")
            return value
    return None


def _hub(event: Mapping[str, Any]) -> str:
    """The hub an event counts for: ``provenance.origin_hub``, else the first of ``provenance.hub_path``."""
    hub = _text(event, "provenance.origin_hub")
    if hub is None:
        path = _text(event, "provenance.hub_path")
        hub = path.split(",")[0].strip() if path else None
    return (hub or "unknown")[:MAX_KEY_CHARS]


class _Key:
    """One infrastructure key inside the window.

    Its own facts (of the events whose first key it is): ``events``, ``members`` (the
    contributions -> last time), ``types``, ``level``; ``first``/``last`` seen.  A root also
    holds its cluster's sums in the ``c_*`` slots and the cluster's campaign; another key keeps
    the campaign it was part of at the last rebuild (so that a rebuilt cluster keeps its id)."""

    __slots__ = ("parent", "size", "first", "last", "events", "members", "types", "level",
                 "c_events", "c_members", "c_types", "c_level", "c_first", "campaign")

    def __init__(self, first: float):
        self.parent: Optional[str] = None
        self.size = 1
        self.first = self.last = self.c_first = first
        self.events = self.c_events = 0
        self.members: Dict[tuple, float] = {}        # (hub, country, level, hidden, pap) -> last time
        self.c_members: Dict[tuple, float] = {}
        self.types: Dict[str, int] = {}             # plain dicts: a Counter costs a Python __init__ per key
        self.c_types: Dict[str, int] = {}
        self.level = self.c_level = tlp.Level.CLEAR
        self.campaign: Optional[str] = None

    def reset_cluster(self) -> None:
        self.parent, self.size, self.c_first = None, 1, self.first
        self.c_events, self.c_members, self.c_types, self.c_level = \
            self.events, dict(self.members), dict(self.types), self.level


def _merge_members(into: Dict[Any, float], other: Mapping[Any, float]) -> None:
    for member, when in other.items():
        if into.get(member, -math.inf) < when:
            into[member] = when
    if len(into) > MAX_MEMBERS:           # bounded: the least recent contributions go first
        for member, _ in sorted(into.items(), key=lambda kv: kv[1])[:len(into) - MAX_MEMBERS]:
            del into[member]


class CampaignDetector:
    """The campaign detector (:class:`~intelmq_crossborder.analytics.alerts.Detector`).

    :meth:`observe` counts one event and returns the alerts it raises; :meth:`assign` does the
    same and also returns the campaign id the event may carry (or None).  ``counts`` holds
    ``events``, ``withheld`` (above ``max_tlp``), ``unlinked`` (no key), ``late`` (older than
    the window), ``common`` (only background keys), ``evicted`` (keys beyond ``max_keys``)
    and ``baseline`` (campaigns already there in the warm-up: no alert, no id)."""

    name = NAME

    def __init__(self, settings: Optional[CampaignSettings] = None, salt: Optional[str] = None):
        self.settings = settings or CampaignSettings()
        self.salt = salt or secrets.token_hex(16)
        if "domain" in self.settings.link_keys:
            _psl()          # reading the list takes most of a second: at the start, not with the first event
        self.keys: Dict[str, _Key] = {}
        self.edges: Dict[Tuple[str, str], float] = {}
        self.seen: Dict[str, List[float]] = {}    # every key's first and last sighting, beyond the window
        self.campaigns: Dict[str, dict] = {}      # id -> {"first": t, "alerted": bool, "baseline": bool}
        self.clock = -math.inf                    # the latest event time (or advance) seen
        self.started: Optional[float] = None
        self.next_rebuild = -math.inf
        self.counts: Counter = Counter()

    # -- the Detector protocol --

    def observe(self, event: Mapping[str, Any], now: Optional[float] = None) -> List[Alert]:
        return self.assign(event, now)[0]

    def advance(self, now: float) -> List[Alert]:
        if now > self.clock:
            self.clock = now
        if self.clock >= self.next_rebuild:
            self._rebuild()
        return []

    # -- the work --

    def assign(self, event: Mapping[str, Any], now: Optional[float] = None,
               read: Optional[tlp.EventTLP] = None) -> Tuple[List[Alert], Optional[str]]:
        """``(alerts, the campaign id this event may carry or None)``.  ``now`` (the expert's wall
        clock): an event dated more than ``max_ahead`` seconds after it is refused, a later one
        counts as now.  Raises :class:`EventError` (time, a key field) and ``tlp.LabelError``
        (labels that cannot be read): nothing is counted then.  ``read``: what
        :func:`tlp.event_tlp` read of this very event, when the caller has read it already."""
        s = self.settings
        if read is None:
            level, hidden = ew.read_level(event, s.default_level)
        else:
            level, hidden = (read.level if read.level is not None else s.default_level), read.hide_source
        keys = infrastructure_keys(event, s.link_keys)
        when = event_time(event)
        ctype = (_text(event, "classification.type") or "unknown")[:64]
        country = _country(event)
        hub = _hub(event)
        pap = event.get("sharing.pap")
        pap = pap if isinstance(pap, str) else None
        if now is not None:
            if when > now + s.max_ahead:
                raise EventError("time.source", f"more than {s.max_ahead} s in the future")
            when = min(when, now)
        self.counts["events"] += 1
        if self.started is None:
            self.started = when
        if when > self.clock:
            self.clock = when
        if self.clock >= self.next_rebuild:
            self._rebuild()
        if not keys:
            self.counts["unlinked"] += 1
            return [], None
        if level > s.max_level:                   # read-only: it may carry an id it is allowed to see
            self.counts["withheld"] += 1
            return [], self._campaign_for(keys, level)
        if when < self.clock - s.window:
            self.counts["late"] += 1
            return [], self._campaign_for(keys, level)
        for name in keys:
            self._touch(name, when)
        linking = [name for name in keys if not self._common(name)]
        if not linking:                           # only background keys: nothing to link
            self.counts["common"] += 1
            return [], None
        keys = linking
        contribution = (hub, country, level, hidden, pap)     # an ew.Contribution's fields (a tuple: cheaper)
        own = self.keys[keys[0]]
        own.events += 1
        own.types[ctype] = own.types.get(ctype, 0) + 1
        if own.members.get(contribution, -math.inf) < when:
            own.members[contribution] = when
            if len(own.members) > MAX_MEMBERS:
                _merge_members(own.members, {})
        own.level = max(own.level, level)
        root_name = self._find(keys[0])
        root = self.keys[root_name]
        root.c_events += 1
        root.c_types[ctype] = root.c_types.get(ctype, 0) + 1
        members = root.c_members
        if members.get(contribution, -math.inf) < when:
            members[contribution] = when
            if len(members) > MAX_MEMBERS:
                _merge_members(members, {})
        root.c_level = max(root.c_level, level)
        for other in keys[1:]:
            self.edges[(keys[0], other) if keys[0] < other else (other, keys[0])] = when
            root_name = self._union(root_name, self._find(other))
        root = self.keys[root_name]
        alerts = self._check(root_name, root, when) if root.campaign is None else []
        if len(self.keys) > s.max_keys or len(self.edges) > s.max_keys * EDGE_FACTOR:
            self._rebuild()
        return alerts, self._campaign_for(keys, level)

    def _common(self, name: str) -> bool:
        """A background key: first seen more than ``common_after`` ago (a malware family, a CVE,
        a network that has been around): it links nothing.  Campaign infrastructure is new."""
        after = self.settings.common_after
        seen = self.seen.get(name)
        return bool(after) and seen is not None and self.clock - seen[0] >= after

    def _touch(self, name: str, when: float) -> _Key:
        seen = self.seen.get(name)
        if seen is None:
            self.seen[name] = [when, when]
        else:
            if when > seen[1]:
                seen[1] = when
            if when < seen[0]:
                seen[0] = when
        key = self.keys.get(name)
        if key is None:
            key = self.keys[name] = _Key(when)
        else:
            if when > key.last:
                key.last = when
            if when < key.first:
                key.first = when
        return key

    def _find(self, name: str) -> str:
        keys = self.keys
        root = name
        while keys[root].parent is not None:
            root = keys[root].parent
        while keys[name].parent is not None and keys[name].parent != root:     # path compression
            keys[name].parent, name = root, keys[name].parent
        return root

    def _union(self, a: str, b: str) -> str:
        if a == b:
            return a
        ka, kb = self.keys[a], self.keys[b]
        if ka.size < kb.size:
            a, b, ka, kb = b, a, kb, ka
        kb.parent = a
        ka.size += kb.size
        ka.c_events += kb.c_events
        ka.c_first = min(ka.c_first, kb.c_first)
        for name, count in kb.c_types.items():
            ka.c_types[name] = ka.c_types.get(name, 0) + count
        ka.c_level = max(ka.c_level, kb.c_level)
        _merge_members(ka.c_members, kb.c_members)
        ka.campaign = self._older(ka.campaign, kb.campaign)
        return a

    def _older(self, a: Optional[str], b: Optional[str]) -> Optional[str]:
        if a is None or b is None or a == b:
            return a or b
        fa = self.campaigns.get(a, {}).get("first", math.inf)
        fb = self.campaigns.get(b, {}).get("first", math.inf)
        return a if (fa, a) <= (fb, b) else b

    def _check(self, root_name: str, root: _Key, now: float) -> List[Alert]:
        s = self.settings
        cutoff = now - s.window
        live = [ew.Contribution(*c) for c, when in root.c_members.items() if when >= cutoff]
        spread = ew.Spread(live)
        hit = (s.min_countries and len(spread.countries) >= s.min_countries) or \
              (s.min_hubs and len(spread.hubs) >= s.min_hubs)
        if not hit:
            return []
        # the campaign began when its infrastructure was first seen (in the window): the members
        # hold each contributor's last time, which would make the delay look shorter than it was
        start = max(root.c_first, cutoff)
        campaign_id = "campaign-" + hmac.new(self.salt.encode(), f"{root_name}\x00{start!r}".encode(),
                                             "sha256").hexdigest()[:20]
        baseline = self.started is not None and now < self.started + s.warmup
        self.campaigns[campaign_id] = {"first": start, "alerted": not baseline, "baseline": baseline}
        root.campaign = campaign_id
        if baseline:
            self.counts["baseline"] += 1
            return []
        level = max(tlp.most_restrictive(c.level for c in live), root.c_level)
        evidence: Dict[str, Any] = {
            "campaign_id": campaign_id, "observed_countries": len(spread.countries),
            "min_countries": s.min_countries, "observed_hubs": len(spread.hubs), "min_hubs": s.min_hubs,
            "events": root.c_events, "keys": root.size, "window_seconds": s.window,
            "types": dict(sorted(root.c_types.items()))}
        pap = ew.most_restrictive_pap(c.pap for c in live)
        if pap:
            evidence["pap"] = pap
        ctype = min(root.c_types.items(), key=lambda kv: (-kv[1], kv[0]))[0] if root.c_types else "unknown"
        return [Alert(detector=self.name, kind="campaign", start=start, raised=now, classification_type=ctype,
                      countries=tuple(spread.named_countries()), evidence=evidence, hubs=len(spread.hubs),
                      undisclosed=spread.undisclosed_hubs(), tlp=level.label)]

    def _campaign_for(self, keys: List[str], level: tlp.Level) -> Optional[str]:
        """The campaign id an event of ``level`` with ``keys`` may carry: its cluster's, when the
        cluster is a campaign (not one already there in the warm-up) and its TLP is at most ``level``."""
        for name in keys:
            if name in self.keys and not self._common(name):
                root = self.keys[self._find(name)]
                cid = root.campaign
                if cid is None or root.c_level > level or self.campaigns.get(cid, {}).get("baseline", False):
                    return None
                return cid
        return None

    def campaign_of_keys(self, keys: Iterable[str]) -> Optional[str]:
        """The campaign of the cluster of the first known key (any TLP; for tests and tools)."""
        for name in keys:
            if name in self.keys:
                return self.keys[self._find(name)].campaign
        return None

    # -- expiry --

    def _rebuild(self) -> None:
        """Drop what left the window (and the oldest keys beyond ``max_keys``); unite the rest again."""
        s = self.settings
        cutoff = self.clock - s.window
        for name, key in self.keys.items():          # each key remembers its cluster's campaign
            cid = self.keys[self._find(name)].campaign
            key.campaign = None if self.campaigns.get(cid, {}).get("baseline", False) else cid
        live = {name: key for name, key in self.keys.items() if key.last >= cutoff}
        if len(live) > s.max_keys:
            keep = sorted(live.items(), key=lambda kv: kv[1].last, reverse=True)[:max(1, int(s.max_keys * 0.9))]
            self.counts["evicted"] += len(live) - len(keep)
            live = dict(keep)
        for name, key in live.items():
            if self._common(name):                     # a background key keeps only its times
                key.members, key.events, key.types, key.level, key.campaign = {}, 0, {}, tlp.Level.CLEAR, None
            elif any(when < cutoff for when in key.members.values()):
                key.members = {c: when for c, when in key.members.items() if when >= cutoff}
                if not key.members:
                    key.events, key.types, key.level = 0, {}, tlp.Level.CLEAR
        self.keys = live
        self.edges = {edge: when for edge, when in self.edges.items()
                      if when >= cutoff and edge[0] in live and edge[1] in live
                      and not self._common(edge[0]) and not self._common(edge[1])}
        if len(self.edges) > s.max_keys * EDGE_FACTOR:           # the oldest links go first
            keep = sorted(self.edges.items(), key=lambda kv: kv[1], reverse=True)[:s.max_keys * EDGE_FACTOR * 9 // 10]
            self.counts["evicted_links"] += len(self.edges) - len(keep)
            self.edges = dict(keep)
        if len(self.seen) > s.max_keys * HISTORY_FACTOR:     # the oldest sightings go first
            keep = sorted(self.seen.items(), key=lambda kv: kv[1][1], reverse=True)[:s.max_keys * HISTORY_FACTOR
                                                                                      * 9 // 10]
            self.seen = dict(keep)
        self._relink()
        self.next_rebuild = self.clock + max(1.0, s.window / REBUILDS_PER_WINDOW)

    def _relink(self) -> None:
        for key in self.keys.values():
            key.reset_cluster()
        for a, b in self.edges:
            self._union(self._find(a), self._find(b))
        used = {key.campaign for key in self.keys.values() if key.parent is None and key.campaign}
        self.campaigns = {cid: rec for cid, rec in self.campaigns.items() if cid in used}

    # -- state --

    def state(self) -> dict:
        """The whole state, JSON-safe.  It holds the keys (network prefixes, domains, hashes):
        keep the file as private as the events (the expert writes it with mode 0600)."""
        for name, key in self.keys.items():
            key.campaign = self.keys[self._find(name)].campaign
        def finite(t: float) -> Optional[float]:
            return t if math.isfinite(t) else None
        return {
            "name": NAME, "version": STATE_VERSION, "settings": self.settings.as_parameters(), "salt": self.salt,
            "clock": finite(self.clock), "started": self.started, "next_rebuild": finite(self.next_rebuild),
            "counts": dict(self.counts),
            "keys": {name: {"first": k.first, "last": k.last, "events": k.events, "level": k.level.label,
                            "types": dict(k.types), "campaign": k.campaign,
                            "members": [[ew.Contribution(*c).member(), when] for c, when in k.members.items()]}
                     for name, k in self.keys.items()},
            "edges": [[a, b, when] for (a, b), when in self.edges.items()],
            "seen": [[name, first, last] for name, (first, last) in self.seen.items()],
            "campaigns": {cid: dict(rec) for cid, rec in self.campaigns.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "CampaignDetector":
        """The detector :meth:`state` saved; :class:`StateError` naming the field otherwise."""
        if not isinstance(state, Mapping):
            raise StateError(f"a mapping expected, not {inputs.kind_of(state)}")
        if want(state, "name", str) != NAME:
            raise StateError(f"a {NAME} state expected, not {state['name']!r}", "name")
        if want(state, "version", int) != STATE_VERSION:
            raise StateError(f"version {STATE_VERSION} expected, not {state['version']}", "version")
        params = want(state, "settings", dict)
        try:
            settings = CampaignSettings.from_parameters(params)
        except (ValueError, TypeError) as exc:
            raise StateError(str(exc), "settings") from None
        salt = want(state, "salt", str)
        if not 16 <= len(salt) <= 128:
            raise StateError("16 to 128 characters expected", "salt")
        det = cls(settings, salt)
        det.clock = _optional_time(state, "clock", -math.inf)
        det.next_rebuild = _optional_time(state, "next_rebuild", -math.inf)
        started = _optional_time(state, "started", None)
        det.started = started
        counts = want(state, "counts", dict)
        for name, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StateError("a count >= 0 expected", f"counts.{name}")
            det.counts[str(name)[:64]] = value
        keys = want(state, "keys", dict)
        if len(keys) > settings.max_keys * 2:
            raise StateError(f"more than twice max_keys ({settings.max_keys}) keys", "keys")
        for name, raw in keys.items():
            where = f"keys[{name[:80]!r}]"
            if not isinstance(raw, dict):
                raise StateError(f"a mapping expected, not {inputs.kind_of(raw)}", where)
            if len(name) > MAX_KEY_CHARS or name.partition(":")[0] not in KEY_KINDS:
                raise StateError("not an infrastructure key", where)
            key = _Key(want(raw, "first", float, where))
            key.last = want(raw, "last", float, where)
            key.events = want(raw, "events", int, where, minimum=0)
            key.level = _level(want(raw, "level", str, where), where + ".level")
            types = want(raw, "types", dict, where)
            if len(types) > 1000 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in types.values()):
                raise StateError("type -> count >= 0 expected", where + ".types")
            key.types = dict(types)
            campaign = raw.get("campaign")
            if campaign is not None and not isinstance(campaign, str):
                raise StateError(f"a string or null expected, not {inputs.kind_of(campaign)}", where + ".campaign")
            key.campaign = campaign
            members = want(raw, "members", list, where)
            if len(members) > MAX_MEMBERS:
                raise StateError(f"at most {MAX_MEMBERS} expected", where + ".members")
            for i, item in enumerate(members):
                spot = f"{where}.members[{i}]"
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)
                        and math.isfinite(item[1])):
                    raise StateError("[member, time] expected", spot)
                try:
                    if len(item[0]) > 2048:
                        raise ValueError
                    contribution = ew.Contribution.from_member(item[0])
                except (ValueError, TypeError, tlp.UnknownTLPError, AttributeError, RecursionError):
                    raise StateError("not a contribution", spot) from None
                if not (isinstance(contribution.hub, str) and all(
                        v is None or isinstance(v, str) for v in (contribution.country, contribution.pap))):
                    raise StateError("not a contribution", spot)
                key.members[(contribution.hub, contribution.country, contribution.level, contribution.undisclosed,
                             contribution.pap)] = float(item[1])
            det.keys[name] = key
        edges = want(state, "edges", list)
        for i, item in enumerate(edges):
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], str) and item[0] in det.keys and item[1] in det.keys
                    and isinstance(item[2], (int, float)) and not isinstance(item[2], bool)
                    and math.isfinite(item[2])):
                raise StateError("[key, key, time] of two known keys expected", f"edges[{i}]")
            a, b = sorted((item[0], item[1]))
            det.edges[(a, b)] = float(item[2])
        seen = want(state, "seen", list)
        if len(seen) > settings.max_keys * HISTORY_FACTOR * 2:
            raise StateError(f"more than {settings.max_keys * HISTORY_FACTOR * 2} sightings", "seen")
        for i, item in enumerate(seen):
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and len(item[0]) <= MAX_KEY_CHARS and all(_finite(x) for x in item[1:])):
                raise StateError("[key, first, last] expected", f"seen[{i}]")
            det.seen[item[0]] = [float(item[1]), float(item[2])]
        for name, key in det.keys.items():
            det.seen.setdefault(name, [key.first, key.last])
        campaigns = want(state, "campaigns", dict)
        for cid, rec in campaigns.items():
            where = f"campaigns[{cid[:80]!r}]"
            if not isinstance(rec, dict):
                raise StateError(f"a mapping expected, not {inputs.kind_of(rec)}", where)
            det.campaigns[cid] = {"first": want(rec, "first", float, where),
                                  "alerted": want(rec, "alerted", bool, where),
                                  "baseline": want(rec, "baseline", bool, where)}
        det._relink()
        return det


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_time(state: Mapping[str, Any], name: str, default: Any) -> Any:
    if state.get(name) is None:
        return default
    return want(state, name, float)


def _level(label: str, where: str) -> tlp.Level:
    try:
        return tlp.Level.from_label(label)
    except tlp.UnknownTLPError:
        raise StateError(f"not a TLP level: {label[:40]!r}", where) from None


def campaign(params: Optional[Mapping[str, Any]] = None) -> CampaignDetector:
    """The registry's factory (:data:`~intelmq_crossborder.analytics.alerts.DETECTORS` ``campaign``).
    ``params`` may also hold ``salt`` (the campaign ids' key; random when not given)."""
    params = params or {}
    salt = optional(params.get("salt"))
    if salt is not None and (not isinstance(salt, str) or not 16 <= len(salt) <= 128):
        raise ValueError("Parameter salt must be a text of 16 to 128 characters.")
    return CampaignDetector(CampaignSettings.from_parameters(params), salt)
