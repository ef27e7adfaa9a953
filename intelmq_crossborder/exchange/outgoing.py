"""What goes into an outgoing bundle, and how it is protected: shared by the exchange output bot
and ``intelmq-crossborder bundle seal``.

:func:`bundled_copy` is the copy of one event a peer hub receives (or :class:`NotBundled`
naming the field that keeps it out); :func:`encryption_key_for` is the recipient's encryption
key the trust store announces (None: the data goes in clear, as for a peer without one).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.policy.redact import without_source

__all__ = ["NotBundled", "bundled_copy", "bundled_line", "encryption_key_for"]


class NotBundled(CrossBorderError):
    """An event that must not go into a bundle; ``field``/``value`` name what decided it."""

    def __init__(self, field: str, value, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field}: {reason}")


def bundled_copy(flat: dict, max_level: "tlp.Level", recipient: str) -> dict:
    """The copy of an event (flat IntelMQ keys) that goes into a bundle for ``recipient``.

    The level is the effective TLP of :func:`intelmq_crossborder.core.tlp.event_tlp` (the most
    restrictive label in any field); the copy carries it in ``sharing.tlp``.  RED,
    AMBER+STRICT, a level above ``max_level`` or a label that cannot be read raise
    :class:`NotBundled`.  A hidden source leaves every field of ``tlp.SOURCE_FIELDS`` out."""
    try:
        labels = tlp.event_tlp(flat)
    except tlp.LabelError as exc:
        raise NotBundled(exc.field, exc.value, f"{exc.reason}; not bundled for {recipient}") from None
    level = labels.level
    if level is None:
        raise NotBundled("sharing.tlp", None, f"event without a TLP label is not bundled for {recipient}; "
                                              "run the cross-border TLP expert before this bot")
    field = labels.field
    if level is tlp.Level.RED:
        raise NotBundled(field, level.label, f"TLP:RED is never forwarded automatically; not bundled for {recipient}")
    if level is tlp.Level.AMBER_STRICT:
        raise NotBundled(field, level.label, "TLP:AMBER+STRICT never leaves the organisation; "
                                             f"not bundled for {recipient}")
    if level > max_level:
        raise NotBundled(field, level.label, f"TLP:{level.label} is above max_tlp {max_level.label} of the "
                                             f"exchange with {recipient}; not bundled")
    if labels.hide_source:
        flat = without_source(flat)
    flat["sharing.tlp"] = level.label
    return flat


def bundled_line(flat: dict, max_level: "tlp.Level", recipient: str) -> bytes:
    """:func:`bundled_copy` as the bundle's JSON line (sorted keys, UTF-8, no newline)."""
    return json.dumps(bundled_copy(flat, max_level, recipient), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def encryption_key_for(trust: Optional[Union[str, Path, bundle.TrustStore]], recipient: str,
                       require: bool = False) -> Optional[bundle.TrustedKey]:
    """The recipient's encryption key from the trust store (a path is read now), or None to seal
    in clear.  :class:`~intelmq_crossborder.formats.bundle.BundleError` when the trust store
    cannot be read, when every key it lists for the recipient is revoked, or when ``require``
    is set and it lists none: a bundle is never sealed in clear by accident."""
    store = trust if isinstance(trust, bundle.TrustStore) or trust is None else bundle.TrustStore.from_file(trust)
    key = store.encryption_key(recipient) if store is not None else None
    if key is None and require:
        where = store.path if store is not None else "(no trust store)"
        raise bundle.BundleError("trust-store", f"encryption is required but the trust store {where} has no "
                                                f"encryption key of {recipient}: the bundle is not sealed in clear")
    return key
