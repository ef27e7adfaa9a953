"""A hub's first trust store: the schema of docs/exchange-format.md with the hub's own public keys
(Ed25519, and for a hybrid hub ML-DSA-65 and its MLKEM768-X25519 encryption key).

``intelmq-crossborder init`` writes it; the peers' keys are added later.  The text is
checked with :meth:`intelmq_crossborder.formats.bundle.TrustStore.from_dict` before it
is returned, so what is written is always a trust store the collector accepts.
"""
from __future__ import annotations

from typing import Optional, Sequence

import yaml

from intelmq_crossborder.formats import bundle
from intelmq_crossborder.formats import bundle_crypto as bc

__all__ = ["skeleton", "peer_entry", "dumps"]


def peer_entry(country: Optional[str], keys, comment: str = "") -> dict:
    """A peer's trust store entry with the public keys of ``keys`` (one key, private or public,
    or a sequence: Ed25519, ML-DSA-65, MLKEM768-X25519).  With an ML-DSA-65 key the entry
    requires both signature algorithms (``signature_algorithms``)."""
    keys = list(keys) if isinstance(keys, Sequence) else [keys]
    entries = []
    for key in keys:
        entry = {"algorithm": bc.algorithm_of(key), "public_key": bundle.public_key_b64(key)}
        if comment:
            entry["comment"] = f"{comment} ({bc.algorithm_of(key)})" if len(keys) > 1 else comment
        entries.append(entry)
    peer: dict = {}
    if country is not None:
        peer["country"] = country
    signing = [bc.algorithm_of(k) for k in keys if bc.algorithm_of(k) in bc.SIGNATURE_ALGORITHMS]
    if signing and signing != [bc.ED25519]:
        peer["signature_algorithms"] = signing
    peer["keys"] = entries
    return peer


def skeleton(hub: str, country: Optional[str], key, comment: str = "") -> dict:
    """``{"version": 1, "peers": {hub: {...own public key(s)...}}}``."""
    return {"version": 1, "peers": {hub: peer_entry(country, key, comment)}}


def dumps(data: dict, header: str = "") -> str:
    """The trust store ``data`` as YAML (``header`` lines as comments on top).

    Raises :class:`intelmq_crossborder.formats.bundle.BundleError` if ``data`` is not a
    valid trust store."""
    bundle.TrustStore.from_dict(data, "<new trust store>")
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
