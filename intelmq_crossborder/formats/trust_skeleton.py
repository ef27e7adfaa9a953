"""A hub's first trust store: the schema of docs/exchange-format.md with the hub's own public key.

``intelmq-crossborder init`` writes it; the peers' keys are added later.  The text is
checked with :meth:`intelmq_crossborder.formats.bundle.TrustStore.from_dict` before it
is returned, so what is written is always a trust store the collector accepts.
"""
from __future__ import annotations

from typing import Optional, Union

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from intelmq_crossborder.formats import bundle

__all__ = ["skeleton", "dumps"]


def skeleton(hub: str, country: Optional[str], key: Union[Ed25519PrivateKey, Ed25519PublicKey],
             comment: str = "") -> dict:
    """``{"version": 1, "peers": {hub: {...own public key...}}}``."""
    entry = {"algorithm": "ed25519", "public_key": bundle.public_key_b64(key)}
    if comment:
        entry["comment"] = comment
    peer: dict = {}
    if country is not None:
        peer["country"] = country
    peer["keys"] = [entry]
    return {"version": 1, "peers": {hub: peer}}


def dumps(data: dict, header: str = "") -> str:
    """The trust store ``data`` as YAML (``header`` lines as comments on top).

    Raises :class:`intelmq_crossborder.formats.bundle.BundleError` if ``data`` is not a
    valid trust store."""
    bundle.TrustStore.from_dict(data, "<new trust store>")
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
