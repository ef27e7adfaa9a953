"""STIX patterns to IntelMQ fields, with the official grammar (``stix2-patterns``, through
``stix2``'s pattern visitor, which builds its expression objects from that grammar).

``alternatives(pattern, version)`` returns a :class:`Conversion`: one dict of IntelMQ fields per
event the pattern stands for, and what could not be converted.

- Each observation expression (``[...]``) is converted on its own; observations joined by
  ``AND``/``OR``/``FOLLOWEDBY`` and qualifiers (``WITHIN``, ``REPEATS``, ``START``/``STOP``) give
  the events of each observation (the whole pattern is kept in ``extra.stix_pattern``).
- Inside an observation: ``OR`` gives one event per alternative, ``AND`` one event with the
  fields of both sides combined (two different values for one field stay two events);
  ``IN (...)`` is an ``OR`` of its values; ``ISSUBSET`` on an address is a network.
- A comparison converts when its object path has an IntelMQ field (:data:`PATHS`) and its
  operator is ``=`` (``ISSUBSET``/``IN`` as above).  ``!=``, ``NOT``, ``LIKE``, ``MATCHES``,
  ``<``, ``>`` and paths without a field are not converted: an ``AND`` keeps its other
  comparisons, an alternative with nothing that identifies an observable (only a port, a file
  name or a type assertion) is not an event.  Both are counted in ``Conversion.unconverted``.
- An event needs an observable: an address, network, domain, URL, hash, e-mail address or ASN.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Conversion", "PatternError", "alternatives", "PATHS", "IDENTIFYING", "MAX_ALTERNATIVES",
           "MAX_PATTERN_CHARS", "value_fields"]

#: More alternatives than this in one pattern is refused (an AND of ORs multiplies).
MAX_ALTERNATIVES = 1000
MAX_PATTERN_CHARS = 64 * 1024

#: Fields that identify an observable: an alternative needs one of them to be an event.
IDENTIFYING = frozenset({
    "source.ip", "source.network", "source.fqdn", "source.url", "source.account", "source.asn",
    "destination.ip", "destination.network", "destination.fqdn",
    "malware.hash.md5", "malware.hash.sha1", "malware.hash.sha256",
})

_HASHES = {"md5": "malware.hash.md5", "sha-1": "malware.hash.sha1", "sha1": "malware.hash.sha1",
           "sha-256": "malware.hash.sha256", "sha256": "malware.hash.sha256"}
_HASH_LEN = {"malware.hash.md5": 32, "malware.hash.sha1": 40, "malware.hash.sha256": 64}
_HEX = re.compile(r"[0-9a-f]+")


class PatternError(ValueError):
    """A pattern that cannot be read, or a value that does not fit its object path."""


@dataclass
class Conversion:
    """``events``: field dicts, one per event; ``unconverted``: ``"path op"`` of each
    comparison not converted; ``observations``: how many ``[...]`` the pattern has."""

    events: list = field(default_factory=list)
    unconverted: list = field(default_factory=list)
    observations: int = 0


# --- values ---------------------------------------------------------------------------

def _address(prefix: str, value: Any) -> dict:
    """``<prefix>.ip`` or ``<prefix>.network`` (a CIDR; a host prefix is an address)."""
    if not isinstance(value, str):
        raise PatternError(f"an address must be a string, not {value!r}")
    text = value.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.num_addresses == 1:
                return {f"{prefix}.ip": str(net.network_address)}
            return {f"{prefix}.network": str(net)}
        return {f"{prefix}.ip": str(ipaddress.ip_address(text))}
    except ValueError:
        raise PatternError(f"{value!r} is not an IP address or network") from None


def _host(prefix: str, value: Any) -> dict:
    """A domain name; real publishers put IP addresses in domain-name patterns: those are
    addresses (``<prefix>.ip``)."""
    if not isinstance(value, str) or not value.strip():
        raise PatternError(f"a domain name must be a non-empty string, not {value!r}")
    text = value.strip().rstrip(".")
    try:
        return {f"{prefix}.ip": str(ipaddress.ip_address(text.strip("[]")))}
    except ValueError:
        pass
    if any(ch.isspace() or not ch.isprintable() for ch in text) or "/" in text or len(text) > 253:
        raise PatternError(f"{value!r} is not a domain name")
    return {f"{prefix}.fqdn": text.lower()}


def _url(value: Any) -> dict:
    if not isinstance(value, str) or not value.strip():
        raise PatternError(f"a URL must be a non-empty string, not {value!r}")
    from intelmq_crossborder.formats.misp.convert import URL_SCHEME_ADDED_FIELD, _url as misp_url
    try:
        out = misp_url(value.strip())
    except ValueError as exc:
        raise PatternError(f"{value!r} is not a URL: {exc}") from None
    if out.pop(URL_SCHEME_ADDED_FIELD, False):
        out["extra.stix_url_scheme_added"] = True
    return out


def _hash(field_name: str):
    def conv(value: Any) -> dict:
        if not isinstance(value, str):
            raise PatternError(f"a hash must be a string, not {value!r}")
        text = value.strip().lower()
        if len(text) != _HASH_LEN[field_name] or not _HEX.fullmatch(text):
            raise PatternError(f"{value!r} is not a {field_name.rsplit('.', 1)[1].upper()} hash")
        return {field_name: text}
    return conv


def _asn(value: Any) -> dict:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PatternError(f"an AS number must be an integer, not {value!r}")
    text = str(value).strip().upper()
    text = text[2:] if text.startswith("AS") else text
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2 ** 32:
        raise PatternError(f"{value!r} is not an AS number")
    return {"source.asn": int(text)}


def _port(field_name: str):
    def conv(value: Any) -> dict:
        if isinstance(value, bool) or not isinstance(value, (int, str)) \
                or not str(value).strip().isdigit() or not 0 <= int(str(value).strip()) < 65536:
            raise PatternError(f"{value!r} is not a port")
        return {field_name: int(str(value).strip())}
    return conv


def _email(field_name: str):
    def conv(value: Any) -> dict:
        if not isinstance(value, str) or "@" not in value or any(ch.isspace() for ch in value.strip()):
            raise PatternError(f"{value!r} is not an e-mail address")
        return {field_name: value.strip()}
    return conv


def _text(field_name: str):
    def conv(value: Any) -> dict:
        if not isinstance(value, str) or not value.strip():
            raise PatternError(f"{value!r} is not a non-empty string")
        return {field_name: value}
    return conv


def _type_assertion(value: Any) -> dict:
    return {}


#: ``object-type:path`` -> function(value) -> IntelMQ fields.  ``*`` matches any list index;
#: file hashes are looked up by algorithm (``MD5``, ``SHA-1``/``SHA1``, ``SHA-256``/``SHA256``).
PATHS = {
    "ipv4-addr:value": lambda v: _address("source", v),
    "ipv6-addr:value": lambda v: _address("source", v),
    "domain-name:value": lambda v: _host("source", v),
    "domain-name:resolves_to_refs[*].value": lambda v: _address("source", v),
    "url:value": _url,
    "email-addr:value": _email("source.account"),
    "email-message:from_ref.value": _email("source.account"),
    "email-message:sender_ref.value": _email("source.account"),
    "autonomous-system:number": _asn,
    "network-traffic:src_ref.value": lambda v: _host("source", v),
    "network-traffic:dst_ref.value": lambda v: _host("destination", v),
    "network-traffic:src_port": _port("source.port"),
    "network-traffic:dst_port": _port("destination.port"),
    "network-traffic:src_ref.type": _type_assertion,
    "network-traffic:dst_ref.type": _type_assertion,
    "file:name": _text("extra.file_name"),
}


def value_fields(path: str, value: Any) -> Optional[dict]:
    """The IntelMQ fields of ``value`` at object path ``path`` (``file:hashes.MD5``...), None when
    the path has no field; raises :class:`PatternError` when the value does not fit."""
    conv = PATHS.get(path)
    if conv is None and path.startswith("file:hashes."):
        name = _HASHES.get(path[len("file:hashes."):].strip("'").lower())
        conv = _hash(name) if name else None
    return None if conv is None else conv(value)


# --- the expression tree --------------------------------------------------------------

def _path_text(lhs) -> str:
    parts = []
    for comp in lhs.property_path:
        name = str(comp.property_name)
        if hasattr(comp, "index"):
            parts.append(f"{name}[*]")
        else:
            parts.append(name)
    return f"{lhs.object_type_name}:{'.'.join(parts)}"


_ESCAPED = re.compile(r"\\(['\\])")


def _constant(c) -> Any:
    """A constant's value; a string literal with its escapes (``\\'``, ``\\\\``) undone: stix2's
    visitor keeps them as written."""
    from stix2 import patterns as P
    if isinstance(c, P.StringConstant) and isinstance(c.value, str):
        return _ESCAPED.sub(r"\1", c.value)
    return c.value


def _constants(rhs) -> list:
    from stix2 import patterns as P
    if isinstance(rhs, P.ListConstant):
        return [_constant(c) for c in rhs.value]
    return [_constant(rhs)]


def _merge(left: list, right: list) -> list:
    out = []
    for a in left:
        for b in right:
            if any(k in a and a[k] != v for k, v in b.items()):
                out.extend([a, b])               # two values for one field: two events
            else:
                out.append({**a, **b})
            if len(out) > MAX_ALTERNATIVES:
                raise PatternError(f"more than {MAX_ALTERNATIVES} alternatives in one observation")
    return out


class _Walker:
    def __init__(self):
        self.unconverted: list = []

    def comparison(self, node) -> Optional[list]:
        """Alternatives of one comparison, or None when it does not convert."""
        from stix2 import patterns as P
        path = _path_text(node.lhs)
        op = "NOT " + node.operator if node.negated else node.operator
        if node.negated or not isinstance(node, (P.EqualityComparisonExpression, P.InComparisonExpression,
                                                 P.IsSubsetComparisonExpression)):
            self.unconverted.append(f"{path} {op}")
            return None
        if isinstance(node, P.IsSubsetComparisonExpression) and not path.endswith("addr:value") \
                and not path.endswith("_ref.value"):
            self.unconverted.append(f"{path} {op}")
            return None
        out = []
        for value in _constants(node.rhs):
            fields = value_fields(path, value)
            if fields is None:
                self.unconverted.append(f"{path} {op}")
                return None
            out.append(fields)
        return out

    def expression(self, node) -> Optional[list]:
        from stix2 import patterns as P
        if isinstance(node, P.ParentheticalExpression):
            return self.expression(node.expression)
        if isinstance(node, P.OrBooleanExpression):
            alts = []
            for operand in node.operands:
                sub = self.expression(operand)
                if sub is not None:
                    alts.extend(sub)
            if len(alts) > MAX_ALTERNATIVES:
                raise PatternError(f"more than {MAX_ALTERNATIVES} alternatives in one observation")
            return alts or None
        if isinstance(node, P.AndBooleanExpression):
            result = None
            for operand in node.operands:
                sub = self.expression(operand)
                if sub is None:
                    continue                   # an AND keeps its other comparisons
                result = sub if result is None else _merge(result, sub)
            return result
        if isinstance(node, P._ComparisonExpression):
            return self.comparison(node)
        raise PatternError(f"unexpected element {type(node).__name__} in a comparison expression")

    def observations(self, node, out: list) -> None:
        from stix2 import patterns as P
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, P.ObservationExpression):
                out.append(item.operand)
            elif isinstance(item, P.QualifiedObservationExpression):
                stack.append(item.observation_expression)
            elif isinstance(item, P.ParentheticalExpression):
                stack.append(item.expression)
            elif isinstance(item, P._CompoundObservationExpression):
                stack.extend(reversed(item.operands))
            else:
                raise PatternError(f"unexpected element {type(item).__name__} in an observation expression")


def _parse(pattern: str, version: str):
    from stix2.pattern_visitor import create_pattern_object
    try:
        return create_pattern_object(pattern, version=version)
    except RecursionError:
        raise PatternError("nested too deeply") from None
    except Exception as exc:        # the grammar's and the visitor's own exceptions, of many types
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise PatternError(f"not a valid STIX {version} pattern: {message}") from None


def _add_port_to_host(fields: dict) -> dict:
    """A ``dst_port`` beside an observable that is no traffic's destination is that host's port."""
    if "destination.port" in fields and not any(k.startswith("destination.") and k != "destination.port"
                                                for k in fields) \
            and any(k in fields for k in ("source.ip", "source.fqdn", "source.network", "source.url")) \
            and "source.port" not in fields:
        fields = dict(fields)
        fields["source.port"] = fields.pop("destination.port")
    return fields


def alternatives(pattern: Any, version: str = "2.1") -> Conversion:
    """The events of a STIX pattern (see the module docstring).  Raises :class:`PatternError`."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PatternError(f"a pattern must be a non-empty string, not {pattern!r}"[:200])
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern of {len(pattern)} characters (at most {MAX_PATTERN_CHARS})")
    version = "2.0" if str(version).startswith("2.0") else "2.1"
    tree = _parse(pattern, version)
    walker = _Walker()
    observations: list = []
    conv = Conversion()
    try:
        walker.observations(tree, observations)
        conv.observations = len(observations)
        for obs in observations:
            for fields in walker.expression(obs) or []:
                if not any(k in IDENTIFYING for k in fields):
                    walker.unconverted.append("no observable: " + ", ".join(sorted(fields)) if fields
                                              else "no observable")
                    continue
                fields = _add_port_to_host(fields)
                if fields not in conv.events:
                    conv.events.append(fields)
                if len(conv.events) > MAX_ALTERNATIVES:
                    raise PatternError(f"more than {MAX_ALTERNATIVES} events from one pattern")
    except RecursionError:
        raise PatternError("nested too deeply") from None
    conv.unconverted = walker.unconverted
    return conv
