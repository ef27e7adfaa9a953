"""Event fingerprints and digests: THE place where an event's identity is computed, and
the one canonical JSON form every digest of the library hashes (:func:`canonical_json`,
:func:`digest`).

A fingerprint is the SHA-256 (hex) of the fields that say *what* an event is
(classification, source and destination identifiers, time of the source, malware,
vulnerability, advisory id), in a canonical JSON form.  It leaves out what a hub
adds or changes on the way (observation time, feed, enrichment such as
geolocation/ASN/reverse DNS, provenance, sharing labels, ``raw``, ``extra.*``), so
the same event reported by two peers has the same fingerprint in every hub.

Used by the provenance/loop-guard expert (de-duplication), the sharing router
(recomputed on a copy whose identifying fields were redacted) and, through the
plain :func:`fingerprint` function, by the hub-to-hub exchange and early warning.
Changing :data:`FINGERPRINT_FIELDS` changes every fingerprint: bump
:data:`FINGERPRINT_VERSION` (it is part of the hashed text) when you do.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

__all__ = ["FINGERPRINT_VERSION", "FINGERPRINT_FIELDS", "FINGERPRINT_FIELD_SET", "fingerprint",
           "identity", "has_identity", "canonical_json", "digest"]

FINGERPRINT_VERSION = 1

#: The identifying fields, in no particular order (the hash input is sorted).
FINGERPRINT_FIELDS = (
    "classification.taxonomy", "classification.type", "classification.identifier",
    "time.source",
    "source.ip", "source.port", "source.fqdn", "source.url", "source.urlpath", "source.account",
    "source.local_hostname", "source.local_ip",
    "destination.ip", "destination.port", "destination.fqdn", "destination.url", "destination.urlpath",
    "destination.account", "destination.local_hostname", "destination.local_ip",
    "protocol.application", "protocol.transport",
    "malware.name", "malware.hash.md5", "malware.hash.sha1", "malware.hash.sha256",
    "event_description.text", "event_description.url",
    "product.vulnerabilities", "product.name", "product.vendor", "product.version",
    "vulnerability.cwe", "csaf.tracking_id", "csaf.tracking_version",
)
FINGERPRINT_FIELD_SET = frozenset(FINGERPRINT_FIELDS)


def identity(event: Mapping[str, Any], fields: Iterable[str] = FINGERPRINT_FIELDS) -> dict:
    """The identifying fields the event has (empty values left out)."""
    get = event.get
    out = {}
    for name in fields:
        value = get(name)
        if value is not None and value != "":
            out[name] = value
    return out


def has_identity(event: Mapping[str, Any]) -> bool:
    """Whether the event has any identifying field (an event without one cannot be de-duplicated)."""
    return bool(identity(event))


def canonical_json(obj: Any) -> str:
    """THE canonical JSON text of the library's digests: sorted keys, no spaces, UTF-8 kept
    as is (not escaped), values JSON cannot hold written as their ``str()``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``; bytes are hashed as they are."""
    data = obj if isinstance(obj, (bytes, bytearray, memoryview)) else canonical_json(obj).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def fingerprint(event: Mapping[str, Any], fields: Iterable[str] = FINGERPRINT_FIELDS) -> str:
    """SHA-256 hex fingerprint of a flat IntelMQ event (dict or Event) over ``fields``."""
    return digest([FINGERPRINT_VERSION, identity(event, fields)])
