"""Signed exchange bundles for the hub-to-hub exchange (format 1.0, see docs/exchange-format.md).

A bundle is one uncompressed POSIX tar file (``*.xbundle``) with exactly three
members, in this order:

``manifest.json``
    UTF-8 JSON object: format and version, sender, recipient, sequence number,
    bundle id, time window, event count, size and SHA-256 of the data member, and
    the list of signature algorithms the sender applied.  These exact bytes are
    what is signed.
``signatures.json``
    ``{"signatures": [{"algorithm": "ed25519", "key_id": "...", "value": "<base64>"}]}``:
    one signature over the manifest bytes per algorithm listed in the manifest.
``data.jsonl.gz``
    gzip-compressed JSON lines, one IntelMQ event (flat keys) per line.

Writing and reading are streaming: the writer compresses into a temporary file
while hashing, the reader hashes, counts and decodes the data member in fixed
size chunks.  Memory does not grow with the bundle.

Verification order (first failure wins, :class:`BundleError` with a ``reason``
code names it): container structure, manifest fields, sender known and key in
the trust store, key not revoked, signature(s), recipient, data size and hash,
event count.  Sequence numbers are checked by the importer
(:mod:`intelmq_crossborder.exchange.importer`), which holds the per-sender state.
"""
from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple, Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.files import atomic_output
from intelmq_crossborder.formats import bundle_crypto as bc
from intelmq_crossborder.formats.bundle_crypto import DecryptionKeys, SigningKeys

__all__ = [
    "FORMAT", "FORMAT_VERSION", "BUNDLE_SUFFIX", "BundleError", "Manifest", "TrustStore", "TrustedKey",
    "BundleWriter", "VerifiedBundle", "open_bundle", "verify_bundle", "load_private_key",
    "generate_private_key", "private_key_pem", "signing_key_problem", "add_peers", "trust_store_with_peers", "public_key_b64", "key_id_of", "bundle_file_name",
    "valid_hub_id", "HUB_ID_RE", "utcnow", "isoformat", "SigningKeys", "DecryptionKeys", "load_signing_keys",
    "load_decryption_keys", "FORMAT_VERSION_HYBRID", "FORMAT_VERSION_ENCRYPTED", "iter_events", "write_bundle",
]

FORMAT = "intelmq-crossborder-bundle"
FORMAT_VERSION = "1.0"                  # Ed25519 only, data in clear: what a 1.0 reader reads
FORMAT_VERSION_HYBRID = "1.1"           # more signature algorithms (ML-DSA-65), data in clear
FORMAT_VERSION_ENCRYPTED = "2.0"        # data encrypted to the recipient: a 1.x reader must refuse it
SUPPORTED_MAJORS = (1, 2)
BUNDLE_SUFFIX = ".xbundle"
MEMBERS = ("manifest.json", "signatures.json", "data.jsonl.gz")
#: The container members of each major version: the same names, so that a 1.x reader gets as far
#: as the manifest and refuses a 2.x bundle with ``unsupported-version`` (in 2.x the data member
#: holds the encryption of the gzip data, see the manifest's ``encryption``).
MEMBERS_OF = {1: MEMBERS, 2: MEMBERS}
MAX_MANIFEST_BYTES = 64 * 1024
MAX_TRUST_STORE_BYTES = 1024 * 1024
MAX_KEY_FILE_BYTES = 64 * 1024
#: An event line longer than this (decompressed) makes the bundle malformed: a signed
#: gzip member that inflates to one huge line cannot exhaust the reader's memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_SEQUENCE = 2 ** 63 - 1
CHUNK = 1 << 20

#: Hub identifiers: lowercase letters, digits, '.', '-'; they appear in file names.
#: Always matched whole (``fullmatch``): no trailing newline or other whitespace.
HUB_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_VERSION_RE = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})")


class BundleError(CrossBorderError):
    """A bundle (or trust store) failed a check.

    ``reason`` is a short machine-readable code (``malformed``, ``unsupported-version``,
    ``unknown-sender``, ``unknown-key``, ``revoked-key``, ``bad-signature``,
    ``wrong-recipient``, ``hash-mismatch``, ``count-mismatch``, ``replay``,
    ``out-of-sequence``, ``trust-store``, ``state`` for an exchange state file that
    cannot be used; for hybrid and encrypted bundles also ``downgrade``,
    ``missing-signature``, ``wrong-encryption-key``, ``no-decryption-key``,
    ``decryption-failed``); ``str()`` is the human-readable reason.
    """

    def __init__(self, reason: str, message: str, algorithm: str = ""):
        self.reason = reason
        #: the signature or encryption algorithm concerned, if any (``ml-dsa-65`` for a stripped
        #: ML-DSA signature, ``ed25519`` for a stripped Ed25519 one)
        self.algorithm = algorithm
        super().__init__(message)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def isoformat(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(value, field_name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BundleError("malformed", f"manifest field {field_name} must be an ISO 8601 time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BundleError("malformed", f"manifest field {field_name} is not an ISO 8601 time: {_shown(value)}") from None
    if parsed.tzinfo is None:
        raise BundleError("malformed", f"manifest field {field_name} has no time zone: {_shown(value)}")
    return parsed


def valid_hub_id(value) -> bool:
    """A hub id: the whole value matches :data:`HUB_ID_RE` (no whitespace, no trailing newline)."""
    return isinstance(value, str) and HUB_ID_RE.fullmatch(value) is not None


def valid_country(value) -> bool:
    """An ISO 3166-1 alpha-2 code such as ``FR``, nothing around it."""
    return isinstance(value, str) and _COUNTRY_RE.fullmatch(value) is not None


def _input_error(exc: "inputs.InputError") -> str:
    """The reader's message, saying "nested too deeply" whichever parser noticed the nesting."""
    text = str(exc)
    return text + " (nested too deeply)" if "nest" in exc.reason and "too deeply" not in text else text




def _shown(value, limit: int = 80) -> str:
    """``repr`` of a value from outside, cut to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- keys and signature algorithms -------------------------------------------------------------

def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: Optional[bytes] = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _read_key_file(path: Union[str, Path]) -> bytes:
    """The bytes of a signing key file; BundleError naming the file if it cannot be read."""
    try:
        path = Path(path)
        if path.is_dir():
            raise BundleError("trust-store", f"{path}: cannot read signing key: is a directory")
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise BundleError("trust-store", f"{path}: cannot read signing key: larger than "
                                             f"{MAX_KEY_FILE_BYTES} bytes, not a PEM key")
        return path.read_bytes()
    except OSError as exc:
        raise BundleError("trust-store", f"{path}: cannot read signing key: {exc.strerror or exc}") from None


def signing_key_problem(path: Union[str, Path], encrypted: bool = False) -> Optional[str]:
    """What keeps ``path`` from being used as the signing key file, or None.

    An unencrypted file is loaded (one Ed25519 and/or one ML-DSA-65 PEM private key); for an
    ``encrypted`` one, whose passphrase the caller may not have, the file must be readable
    and hold a PEM private key."""
    try:
        if not encrypted:
            load_signing_keys(path)
        elif b"PRIVATE KEY-----" not in _read_key_file(path):
            return f"{path}: not a PEM private key"
    except BundleError as exc:
        return str(exc)
    return None


def decryption_key_problem(path: Union[str, Path], encrypted: bool = False) -> Optional[str]:
    """What keeps ``path`` from being used as the decryption key file, or None (see
    :func:`signing_key_problem`)."""
    try:
        if not encrypted:
            load_decryption_keys(path)
        elif b"PRIVATE KEY-----" not in _read_key_file(path):
            return f"{path}: not a PEM private key"
    except BundleError as exc:
        return str(exc)
    return None


def load_private_key(path: Union[str, Path], passphrase: Optional[bytes] = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PKCS#8 PEM; of a hybrid signing key file, its Ed25519 key).
    Errors name the file, never the key material."""
    data = _read_key_file(path)
    if data.count(b"PRIVATE KEY-----") > 2:           # several PEM blocks: a signing key set
        keys = load_signing_keys(path, passphrase).keys
        if bc.ED25519 not in keys:
            raise BundleError("trust-store", f"{path}: the signing key file holds no Ed25519 key")
        return keys[bc.ED25519]
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BundleError("trust-store", f"{path}: not a readable PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("trust-store", f"{path}: the signing key is not an Ed25519 key")
    return key


def load_signing_keys(path: Union[str, Path], passphrase: Optional[bytes] = None) -> SigningKeys:
    """The signing key file of a sender: one Ed25519 and/or one ML-DSA-65 key (PKCS#8 PEM blocks).
    Errors (``trust-store``) name the file, never the key material."""
    _read_key_file(path)          # the messages of a missing, huge or folder path
    try:
        return SigningKeys.from_file(path, passphrase)
    except bc.KeyFileError as exc:
        raise BundleError("trust-store", str(exc)) from None


def load_decryption_keys(path: Union[str, Path], passphrase: Optional[bytes] = None) -> DecryptionKeys:
    """The decryption key file of a receiver: one or more MLKEM768-X25519 HPKE keys."""
    _read_key_file(path)
    try:
        return DecryptionKeys.from_file(path, passphrase)
    except bc.KeyFileError as exc:
        raise BundleError("trust-store", str(exc)) from None


def public_key_b64(key) -> str:
    """The raw public key, base64: the form the trust store holds (32 bytes for Ed25519)."""
    return bc.public_b64(key)


def key_id_of(key) -> str:
    """Key id = ``<algorithm>:`` + first 32 hex digits of SHA-256 of the raw public key."""
    return bc.key_id(key)


#: Signature algorithms this implementation verifies (docs/exchange-format.md).
VERIFIERS = {a: (lambda public, signature, data, _a=a: bc.verify(_a, public, signature, data))
             for a in bc.SIGNATURE_ALGORITHMS}


# --- trust store --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustedKey:
    hub: str
    algorithm: str
    key_id: str
    public_key: object
    revoked: bool = False
    revoked_reason: str = ""


@dataclass
class TrustStore:
    """Peer hubs' public keys, read from one YAML file.

    ::

        version: 1
        peers:
          fr-hub:
            country: FR
            keys:
              - algorithm: ed25519
                public_key: "base64 of the raw 32-byte key"
                revoked: false            # true: bundles signed with it are rejected
                revoked_reason: ""        # optional, shown in the rejection
                comment: "2026 signing key"

    The schema is strict (docs/exchange-format.md): ``version`` is the integer 1;
    hub ids and countries match whole (no whitespace); unknown keys are errors (a
    misspelt ``revoked`` must not leave a key trusted); a public key belongs to one
    hub only; a key marked revoked in any entry is revoked, whatever other entries
    listing it say.
    """

    path: str
    peers: dict = field(default_factory=dict)        # hub -> {"country": str|None, "keys": {key_id: TrustedKey}}

    TOP_KEYS = frozenset({"version", "peers"})
    PEER_KEYS = frozenset({"country", "keys", "comment", "signature_algorithms"})
    ENTRY_KEYS = frozenset({"algorithm", "public_key", "revoked", "revoked_reason", "comment"})

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "TrustStore":
        try:
            data = inputs.read_yaml(path, max_bytes=MAX_TRUST_STORE_BYTES, what="trust store")
        except inputs.InputError as exc:
            raise BundleError("trust-store", f"trust store {_input_error(exc)}") from None
        except (ValueError, TypeError, OverflowError) as exc:   # a YAML constructor refused a value
            raise BundleError("trust-store", f"trust store {path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data, path: str = "<trust store>") -> "TrustStore":
        def bad(where, what):
            return BundleError("trust-store", f"trust store {path}: field {where}: {what}")

        def only(mapping: dict, allowed: frozenset, where: str) -> None:
            unknown = [k for k in mapping if k not in allowed]
            if unknown:
                raise bad(where or "top level", f"unknown key {_shown(unknown[0])} "
                                                f"(allowed: {', '.join(sorted(allowed))})")

        if not isinstance(data, dict):
            raise bad("top level", f"must be a mapping with 'version' and 'peers', not {inputs.kind_of(data)}")
        only(data, cls.TOP_KEYS, "")
        version = data.get("version")
        if type(version) is not int or version != 1:      # exact: True == 1 in Python
            raise bad("version", f"unsupported trust store version {_shown(version)} (expected the integer 1)")
        peers = data.get("peers")
        if not isinstance(peers, dict) or not peers:
            raise bad("peers", f"must be a non-empty mapping of hub id to peer, not {inputs.kind_of(peers)}")
        store = cls(path=path)
        owner: dict = {}          # raw public key -> hub
        revoked: dict = {}        # key id -> reason, from every entry that marks it revoked
        for hub, peer in peers.items():
            where = f"peers.{hub}"
            if not valid_hub_id(hub):
                raise bad(f"peers.{_shown(hub)}", "hub id must match " + HUB_ID_RE.pattern +
                          " (the whole value: no whitespace or newline)")
            if not isinstance(peer, dict):
                raise bad(where, f"must be a mapping with 'keys' (and 'country'), not {inputs.kind_of(peer)}")
            only(peer, cls.PEER_KEYS, where)
            if not isinstance(peer.get("keys"), list) or not peer["keys"]:
                raise bad(f"{where}.keys", f"must be a non-empty list of keys, not {inputs.kind_of(peer.get('keys'))}")
            country = peer.get("country")
            if country is not None and not valid_country(country):
                raise bad(f"{where}.country", f"must be an ISO 3166-1 alpha-2 code such as FR "
                                              f"(nothing around it), not {_shown(country)}")
            comment = peer.get("comment")
            if comment is not None and not isinstance(comment, str):
                raise bad(f"{where}.comment", f"must be a string, not {inputs.kind_of(comment)}")
            keys = {}
            for i, entry in enumerate(peer["keys"]):
                at = f"{where}.keys[{i}]"
                if not isinstance(entry, dict):
                    raise bad(at, f"must be a mapping with 'public_key', not {inputs.kind_of(entry)}")
                only(entry, cls.ENTRY_KEYS, at)
                algorithm = entry.get("algorithm", "ed25519")
                if algorithm not in bc.KEY_ALGORITHMS:
                    raise bad(f"{at}.algorithm", f"unsupported algorithm {_shown(algorithm)} "
                                                 f"(supported: {', '.join(bc.KEY_ALGORITHMS)})")
                encoded = entry.get("public_key")
                try:
                    if not isinstance(encoded, str):
                        raise TypeError("not a string")
                    raw = base64.b64decode(encoded, validate=True)
                    public = bc.public_from_raw(algorithm, raw)
                except (ValueError, TypeError):
                    size = bc.public_length(algorithm)
                    raise bad(f"{at}.public_key", f"must be the base64 of a raw {size}-byte {algorithm} public key "
                                                  "(a string, nothing around it)") from None
                flag = entry.get("revoked", False)
                if not isinstance(flag, bool):
                    raise bad(f"{at}.revoked", f"must be true or false, not {_shown(flag)}")
                reason = entry.get("revoked_reason", "")
                if reason is None:
                    reason = ""
                if not isinstance(reason, str):
                    raise bad(f"{at}.revoked_reason", f"must be a string, not {inputs.kind_of(reason)}")
                comment = entry.get("comment")
                if comment is not None and not isinstance(comment, str):
                    raise bad(f"{at}.comment", f"must be a string, not {inputs.kind_of(comment)}")
                if owner.setdefault(raw, hub) != hub:
                    raise bad(f"{at}.public_key", f"the same public key is already listed under "
                                                  f"{owner[raw]!r}: a key belongs to one hub only")
                kid = key_id_of(public)
                if flag:
                    revoked[kid] = revoked.get(kid) or " ".join(reason.split())
                elif kid in keys:
                    continue          # listed again without the flag: the first entry stands
                keys[kid] = TrustedKey(hub, algorithm, kid, public, flag, " ".join(reason.split()))
            required = peer.get("signature_algorithms", ["ed25519"])
            if not (isinstance(required, list) and required and all(isinstance(a, str) for a in required)):
                raise bad(f"{where}.signature_algorithms", "must be a non-empty list of signature algorithms "
                                                           f"({', '.join(bc.SIGNATURE_ALGORITHMS)}), not "
                                                           f"{inputs.kind_of(required)}")
            for i, algorithm in enumerate(required):
                if algorithm not in bc.SIGNATURE_ALGORITHMS:
                    raise bad(f"{where}.signature_algorithms[{i}]", f"unsupported signature algorithm "
                              f"{_shown(algorithm)} (supported: {', '.join(bc.SIGNATURE_ALGORITHMS)})")
                if required.index(algorithm) != i:
                    raise bad(f"{where}.signature_algorithms[{i}]", f"{algorithm} is listed twice")
                if "signature_algorithms" in peer and not any(k.algorithm == algorithm for k in keys.values()):
                    raise bad(f"{where}.signature_algorithms[{i}]", f"requires {algorithm} but the peer lists no "
                                                                    f"{algorithm} key")
            store.peers[hub] = {"country": country, "keys": keys, "signature_algorithms": tuple(required)}
        # Revocation is global: a key marked revoked in any entry stays revoked in every entry.
        for peer in store.peers.values():
            for kid, key in list(peer["keys"].items()):
                if kid in revoked and not key.revoked:
                    peer["keys"][kid] = TrustedKey(key.hub, key.algorithm, kid, key.public_key, True, revoked[kid])
        return store

    def country_of(self, hub: str) -> Optional[str]:
        peer = self.peers.get(hub)
        return peer["country"] if peer else None

    def required_algorithms(self, hub: str) -> Tuple[str, ...]:
        """The signature algorithms every bundle of ``hub`` must carry (``signature_algorithms``
        of its entry; ``ed25519`` when the entry does not say)."""
        peer = self.peers.get(hub)
        return peer["signature_algorithms"] if peer else ("ed25519",)

    def has_keys_of(self, hub: str, algorithm: str) -> bool:
        """Whether the trust store lists any key (revoked or not) of ``algorithm`` for ``hub``."""
        peer = self.peers.get(hub)
        return bool(peer) and any(k.algorithm == algorithm for k in peer["keys"].values())

    def encryption_key(self, hub: str) -> Optional[TrustedKey]:
        """The key to encrypt bundles for ``hub`` to: its last listed encryption key that is not
        revoked, or None when it announces none.  A hub whose every encryption key is revoked
        raises :class:`BundleError` (``revoked-key``): sending it data in clear instead would be
        a silent downgrade."""
        peer = self.peers.get(hub)
        keys = [k for k in (peer["keys"].values() if peer else ()) if k.algorithm in bc.ENCRYPTION_ALGORITHMS]
        live = [k for k in keys if not k.revoked]
        if live:
            return live[-1]
        if keys:
            raise BundleError("revoked-key", f"every encryption key of {hub!r} in the trust store {self.path} is "
                                             "revoked: add its new key (no bundle is sent in clear instead)")
        return None

    def key(self, hub: str, key_id: str) -> TrustedKey:
        peer = self.peers.get(hub)
        if peer is None:
            raise BundleError("unknown-sender", f"sender {hub!r} is not in the trust store {self.path}")
        trusted = peer["keys"].get(key_id)
        if trusted is None:
            raise BundleError("unknown-key", f"key {key_id} is not a trusted key of {hub!r} in {self.path}")
        if trusted.revoked:
            why = f" ({trusted.revoked_reason})" if trusted.revoked_reason else ""
            raise BundleError("revoked-key", f"key {key_id} of {hub!r} is revoked{why}")
        return trusted


def add_peers(data, peers: dict, path: str = "<trust store>") -> dict:
    """The trust store ``data`` (a parsed document) with ``peers`` (hub id -> entry) added.

    Both must be valid (:meth:`TrustStore.from_dict`).  A hub already listed, or a public key
    already listed for any hub, raises :class:`BundleError` (``trust-store``) naming the hub
    and the key id: nothing is merged or replaced silently."""
    existing = TrustStore.from_dict(data, path)
    added = TrustStore.from_dict({"version": 1, "peers": peers}, "<new peers>")
    owners = {kid: hub for hub, peer in existing.peers.items() for kid in peer["keys"]}
    for hub, peer in added.peers.items():
        if hub in existing.peers:
            listed = ", ".join(existing.peers[hub]["keys"])
            raise BundleError("trust-store", f"trust store {path}: peer {hub!r} is already listed (key {listed}); "
                                             "edit its entry by hand to change or rotate its keys")
        for kid in peer["keys"]:
            if kid in owners:
                raise BundleError("trust-store", f"trust store {path}: key {kid} of {hub!r} is already listed for "
                                                 f"{owners[kid]!r}: a key belongs to one hub only")
    merged = dict(data)
    merged["peers"] = {**data["peers"], **peers}
    TrustStore.from_dict(merged, path)
    return merged


def trust_store_with_peers(text: Optional[str], peers: dict, path: str = "<trust store>") -> Tuple[str, bool]:
    """The text of a trust store file with ``peers`` added (:func:`add_peers`), and whether
    the file's own text (its comments) was kept.

    ``text`` None: a new trust store.  Otherwise the entries are appended under ``peers:``
    when that is the last top-level key in block style, and the result is read back to make
    sure it says exactly the merged trust store; else the whole file is written anew."""
    from intelmq_crossborder.formats import trust_skeleton

    if text is None:
        document = {"version": 1, "peers": dict(peers)}
        TrustStore.from_dict(document, path)
        return trust_skeleton.dumps(document), True
    try:
        data = inputs.loads_yaml(text, path, max_bytes=MAX_TRUST_STORE_BYTES)
    except inputs.InputError as exc:
        raise BundleError("trust-store", f"trust store {_input_error(exc)}") from None
    except (ValueError, TypeError, OverflowError) as exc:   # a YAML constructor refused a value
        raise BundleError("trust-store", f"trust store {path}: not valid YAML: {exc}") from None
    merged = add_peers(data, peers, path)
    appended = _appended(text, peers)
    try:
        if appended is not None and inputs.loads_yaml(appended, path, max_bytes=2 * MAX_TRUST_STORE_BYTES) == merged:
            return appended, True
    except (inputs.InputError, ValueError, TypeError, OverflowError):
        pass
    return trust_skeleton.dumps(merged), False


def _appended(text: str, peers: dict) -> Optional[str]:
    """``text`` with ``peers`` as YAML appended at the indentation of the entries of a final,
    block-style ``peers:`` mapping; None when the file is not laid out that way."""
    import yaml

    lines = text.splitlines()
    top = [i for i, line in enumerate(lines) if line and not line[0].isspace() and not line.startswith("#")]
    if not top or re.fullmatch(r"peers:[ \t]*(#.*)?", lines[top[-1]]) is None:
        return None
    indent = next((len(line) - len(line.lstrip(" ")) for line in lines[top[-1] + 1:]
                   if line.strip() and not line.lstrip().startswith("#")), 0)
    if not indent:
        return None
    block = yaml.safe_dump(peers, sort_keys=False, allow_unicode=False)
    return text + ("" if text.endswith("\n") else "\n") + "".join(
        (" " * indent + line if line else line) + "\n" for line in block.splitlines())


# --- manifest -----------------------------------------------------------------------------------

_KEY_ID_RE = re.compile(r"(ed25519|ml-dsa-65|mlkem768-x25519):[0-9a-f]{32}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Encryption:
    """The ``encryption`` object of a 2.x manifest: to which key the data is encrypted, and the
    HPKE encapsulated key and sealed content key (docs/exchange-format.md)."""

    recipient_key_id: str
    enc: bytes
    wrapped_key: bytes

    def to_dict(self) -> dict:
        return {**bc.ENCRYPTION_PARAMETERS, "chunk_size": bc.CHUNK_PLAIN, "recipient_key_id": self.recipient_key_id,
                "enc": base64.b64encode(self.enc).decode("ascii"),
                "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii")}

    @classmethod
    def from_dict(cls, doc) -> "Encryption":
        def need(cond, name, what):
            if not cond:
                raise BundleError("malformed", f"manifest field encryption{'.' + name if name else ''} {what}",
                                  bc.HPKE_KEM)

        need(isinstance(doc, dict), "", "must be an object")
        for name, value in bc.ENCRYPTION_PARAMETERS.items():
            if doc.get(name) != value:
                raise BundleError("unsupported-version", f"manifest field encryption.{name} is "
                                                         f"{_shown(doc.get(name))}; this reader supports {value!r}",
                                  bc.HPKE_KEM)
        need(type(doc.get("chunk_size")) is int and doc["chunk_size"] == bc.CHUNK_PLAIN, "chunk_size",
             f"must be {bc.CHUNK_PLAIN}")
        kid = doc.get("recipient_key_id")
        need(isinstance(kid, str) and _KEY_ID_RE.fullmatch(kid) is not None and kid.startswith(bc.HPKE_KEM + ":"),
             "recipient_key_id", f"must be an {bc.HPKE_KEM} key id, not {_shown(kid)}")
        raw = {}
        for name, size in (("enc", bc.ENC_LENGTH), ("wrapped_key", bc.WRAPPED_KEY_LENGTH)):
            value = doc.get(name)
            try:
                if not (isinstance(value, str) and _B64_RE.fullmatch(value)):
                    raise ValueError
                raw[name] = base64.b64decode(value, validate=True)
            except ValueError:
                need(False, name, "must be base64")
            need(len(raw[name]) == size, name, f"must be {size} bytes, not {len(raw[name])}")
        unknown = sorted(set(doc) - set(cls(kid, b"", b"").to_dict()))
        need(not unknown, "", f"has unknown field {_shown(unknown[0]) if unknown else ''}")
        return cls(kid, raw["enc"], raw["wrapped_key"])


@dataclass(frozen=True)
class Manifest:
    bundle_id: str
    sender: str
    recipient: str
    sequence: int
    created: str
    window_start: str
    window_end: str
    event_count: int
    data_sha256: str
    data_size: int
    algorithms: tuple
    format_version: str = FORMAT_VERSION
    encryption: Optional[Encryption] = None

    @property
    def major(self) -> int:
        return int(self.format_version.split(".")[0])

    @property
    def data_member(self) -> str:
        return MEMBERS_OF[self.major][2]

    def binding(self) -> bytes:
        """What binds an encrypted data member to this bundle (HPKE info, chunk associated data)."""
        if self.encryption is None:
            raise ValueError("the bundle is not encrypted")
        return bc.binding(self.major, self.bundle_id, self.sender, self.recipient, self.sequence,
                          self.encryption.recipient_key_id)

    def to_dict(self) -> dict:
        doc = self._dict()
        if self.encryption is not None:
            doc["encryption"] = self.encryption.to_dict()
        return doc

    def _dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "bundle_id": self.bundle_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "sequence": self.sequence,
            "created": self.created,
            "window": {"start": self.window_start, "end": self.window_end},
            "event_count": self.event_count,
            "data": {"member": self.data_member, "encoding": "jsonl", "compression": "gzip",
                     "sha256": self.data_sha256, "size": self.data_size},
            "signature": {"algorithms": list(self.algorithms)},
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        try:
            doc = inputs.loads_json(data, "manifest.json", max_depth=16)
        except inputs.InputError as exc:
            raise BundleError("malformed", _input_error(exc)) from None
        if not isinstance(doc, dict):
            raise BundleError("malformed", f"manifest.json must be a JSON object, not {inputs.kind_of(doc)}")
        if doc.get("format") != FORMAT:
            raise BundleError("malformed", f"manifest field format must be {FORMAT!r}, got {_shown(doc.get('format'))}")
        version = doc.get("format_version")
        if not isinstance(version, str) or _VERSION_RE.fullmatch(version) is None:
            raise BundleError("malformed", f"manifest field format_version is not 'MAJOR.MINOR': {_shown(version)}")
        major = int(version.split(".")[0])
        if major not in SUPPORTED_MAJORS:
            raise BundleError("unsupported-version",
                              f"bundle format version {version} is not supported (this reader: "
                              f"{', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)})")

        def need(cond, name, what):
            if not cond:
                raise BundleError("malformed", f"manifest field {name} {what}")

        for name in ("sender", "recipient"):
            need(valid_hub_id(doc.get(name)), name, "must be a hub id matching " + HUB_ID_RE.pattern +
                 f" (the whole value: no whitespace or newline), not {_shown(doc.get(name))}")
        need(doc["sender"] != doc["recipient"], "recipient",
             f"must differ from the sender (both are {doc['sender']!r}): a hub does not send to itself")
        bundle_id = doc.get("bundle_id")
        try:
            need(isinstance(bundle_id, str) and str(uuid.UUID(bundle_id)) == bundle_id,
                 "bundle_id", "must be a lowercase UUID")
        except ValueError:
            need(False, "bundle_id", "must be a lowercase UUID")
        seq = doc.get("sequence")
        need(type(seq) is int and 1 <= seq <= MAX_SEQUENCE, "sequence", f"must be an integer from 1 to {MAX_SEQUENCE}")
        count = doc.get("event_count")
        need(type(count) is int and 0 <= count <= MAX_SEQUENCE, "event_count",
             f"must be an integer from 0 to {MAX_SEQUENCE}")
        window = doc.get("window")
        need(isinstance(window, dict), "window", "must be an object with start and end")
        start = _parse_time(window.get("start"), "window.start")
        end = _parse_time(window.get("end"), "window.end")
        need(start <= end, "window", "must not end before it starts")
        _parse_time(doc.get("created"), "created")
        data = doc.get("data")
        need(isinstance(data, dict), "data", "must be an object")
        member = MEMBERS_OF[major][2]
        need(data.get("member") == member and data.get("encoding") == "jsonl"
             and data.get("compression") == "gzip", "data",
             f"must describe member {member} with encoding jsonl and compression gzip")
        need(isinstance(data.get("sha256"), str) and _HEX64.fullmatch(data["sha256"]) is not None, "data.sha256",
             "must be 64 lowercase hex digits")
        need(type(data.get("size")) is int and 0 <= data["size"] <= MAX_SEQUENCE, "data.size",
             f"must be an integer from 0 to {MAX_SEQUENCE}")
        sig = doc.get("signature")
        need(isinstance(sig, dict) and isinstance(sig.get("algorithms"), list) and sig["algorithms"]
             and all(isinstance(a, str) for a in sig["algorithms"]),
             "signature.algorithms", "must be a non-empty list of algorithm names")
        need(len(set(sig["algorithms"])) == len(sig["algorithms"]), "signature.algorithms",
             "must not list an algorithm twice")
        # 2.x: the data is encrypted, the manifest says to which key; 1.x: never (a 1.x reader
        # would ignore the field and read ciphertext as data)
        encryption = None
        if major >= 2:
            need("encryption" in doc, "encryption", f"is required in format {major}.x")
            encryption = Encryption.from_dict(doc["encryption"])
        else:
            need("encryption" not in doc, "encryption", "needs format 2.x: a 1.x bundle's data is not encrypted")
        return cls(bundle_id=bundle_id, sender=doc["sender"], recipient=doc["recipient"], sequence=seq,
                   created=doc["created"], window_start=window["start"], window_end=window["end"],
                   event_count=count, data_sha256=data["sha256"], data_size=data["size"],
                   algorithms=tuple(sig["algorithms"]), format_version=version, encryption=encryption)

    def summary(self) -> str:
        return (f"bundle {self.bundle_id} from {self.sender} to {self.recipient}, sequence {self.sequence}, "
                f"{self.event_count} events, window {self.window_start}..{self.window_end}")

    def readable_metadata(self) -> dict:
        """What anyone holding the bundle (a relay, a spool) can read: the manifest minus the
        sealed content key (docs/exchange-format.md, "What stays readable")."""
        return {"sender": self.sender, "recipient": self.recipient, "sequence": self.sequence,
                "bundle_id": self.bundle_id, "event_count": self.event_count, "created": self.created,
                "window": {"start": self.window_start, "end": self.window_end}, "data_size": self.data_size,
                "algorithms": list(self.algorithms),
                "recipient_key_id": self.encryption.recipient_key_id if self.encryption else None}


def bundle_file_name(manifest: Manifest) -> str:
    """``<sender>_<recipient>_<sequence:010d>_<bundle id>.xbundle`` (informative; the manifest is authoritative)."""
    return f"{manifest.sender}_{manifest.recipient}_{manifest.sequence:010d}_{manifest.bundle_id}{BUNDLE_SUFFIX}"


# --- writing ------------------------------------------------------------------------------------

class _HashingWriter(io.RawIOBase):
    def __init__(self, fh):
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        self._fh.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


class BundleWriter:
    """Write one bundle, streaming.

    ::

        with BundleWriter(out_dir, "de-hub", "fr-hub", 7, key) as w:
            for event in events:
                w.write_event(event)            # or w.write_line(b'{"...": ...}')
        w.path, w.manifest                       # the sealed bundle

    ``signing_key`` is an Ed25519 key or a :class:`SigningKeys` set (Ed25519 and ML-DSA-65:
    a hybrid bundle, format 1.1).  With ``encrypt_to`` (the recipient's ``mlkem768-x25519``
    key from the trust store, :meth:`TrustStore.encryption_key`) the data member is encrypted
    to it (format 2.0).  Nothing is visible in ``directory`` until :meth:`close` renames the
    finished file into place; an exception (or ``abort()``) removes the temporary files.
    """

    def __init__(self, directory: Union[str, Path], sender: str, recipient: str, sequence: int,
                 signing_key, window_start: Optional[dt.datetime] = None,
                 compresslevel: int = 6, bundle_id: Optional[str] = None, fsync: bool = True,
                 encrypt_to: Optional[TrustedKey] = None):
        for name, value in (("sender", sender), ("recipient", recipient)):
            if not valid_hub_id(value):
                raise ValueError(f"{name} {value!r} is not a hub id matching {HUB_ID_RE.pattern}")
        if sender == recipient:
            raise ValueError(f"sender and recipient are both {sender!r}: a hub does not send to itself")
        if type(sequence) is not int or not 1 <= sequence <= MAX_SEQUENCE:
            raise ValueError(f"sequence must be an integer >= 1, got {sequence!r}")
        self.directory = Path(directory)
        self.sender, self.recipient, self.sequence = sender, recipient, sequence
        self.bundle_id = bundle_id or str(uuid.uuid4())
        self.window_start = window_start or utcnow()
        self._keys = SigningKeys.of(signing_key)
        if encrypt_to is not None and (encrypt_to.algorithm not in bc.ENCRYPTION_ALGORITHMS or encrypt_to.revoked):
            raise ValueError(f"{encrypt_to.key_id} is not a usable encryption key (revoked or not "
                             f"{'/'.join(bc.ENCRYPTION_ALGORITHMS)})")
        self._encrypt_to = encrypt_to
        self._fsync = fsync
        self.count = 0
        self.path: Optional[Path] = None
        self.manifest: Optional[Manifest] = None
        fd, self._data_tmp = tempfile.mkstemp(prefix=f".{self.bundle_id}.", suffix=".data.tmp",
                                              dir=str(self.directory))
        self._enc_tmp = self._data_tmp[:-len(".data.tmp")] + ".enc.tmp"
        self._raw = os.fdopen(fd, "wb")
        self._hasher = _HashingWriter(self._raw)
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._hasher,
                                   compresslevel=compresslevel, mtime=0)

    def write_line(self, line: bytes) -> None:
        """One event as one JSON object, UTF-8, without the newline."""
        if b"\n" in line:
            raise ValueError("an event line must not contain a newline")
        self._gzip.write(line + b"\n")
        self.count += 1

    def write_event(self, event: dict) -> None:
        self.write_line(json.dumps(event, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode("utf-8"))

    def close(self, window_end: Optional[dt.datetime] = None) -> Path:
        self._gzip.close()
        self._raw.flush()
        if self._fsync:
            os.fsync(self._raw.fileno())
        self._raw.close()
        now = utcnow()
        end = window_end or now
        algorithms = self._keys.algorithms
        data_file, data_sha256, data_size, encryption = self._data_tmp, self._hasher.sha256.hexdigest(), \
            self._hasher.size, None
        if self._encrypt_to is not None:
            version = FORMAT_VERSION_ENCRYPTED
            kid = self._encrypt_to.key_id
            info = bc.binding(int(version.split(".")[0]), self.bundle_id, self.sender, self.recipient,
                              self.sequence, kid)
            content_key, enc, wrapped = bc.wrap_content_key(self._encrypt_to.public_key, info)
            encryption = Encryption(kid, enc, wrapped)
            data_file, data_sha256, data_size = self._encrypt(content_key, info)
        else:
            version = FORMAT_VERSION if algorithms == ("ed25519",) else FORMAT_VERSION_HYBRID
        self.manifest = Manifest(
            bundle_id=self.bundle_id, sender=self.sender, recipient=self.recipient, sequence=self.sequence,
            created=isoformat(now), window_start=isoformat(min(self.window_start, end)), window_end=isoformat(end),
            event_count=self.count, data_sha256=data_sha256, data_size=data_size,
            algorithms=algorithms, format_version=version, encryption=encryption)
        manifest_bytes = self.manifest.to_bytes()
        signatures = {"signatures": self._keys.sign_all(manifest_bytes)}
        sig_bytes = (json.dumps(signatures, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        target = self.directory / bundle_file_name(self.manifest)
        try:
            mtime = int(now.timestamp())
            with atomic_output(target, mode=0o644, fsync=self._fsync) as out:
                with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for name, payload in ((MEMBERS[0], manifest_bytes), (MEMBERS[1], sig_bytes)):
                        info = tarfile.TarInfo(name)
                        info.size, info.mtime, info.mode = len(payload), mtime, 0o644
                        tar.addfile(info, io.BytesIO(payload))
                    info = tarfile.TarInfo(self.manifest.data_member)
                    info.size, info.mtime, info.mode = data_size, mtime, 0o644
                    with open(data_file, "rb") as data:
                        tar.addfile(info, data)
        finally:
            _unlink(self._data_tmp)
            _unlink(self._enc_tmp)
        self.path = target
        return target

    def _encrypt(self, content_key: bytes, associated: bytes) -> Tuple[str, str, int]:
        """Encrypt the compressed data (streaming) into a second temporary file: its path,
        SHA-256 and size."""
        path = self._enc_tmp
        with open(self._data_tmp, "rb") as source, open(path, "wb") as out:
            hashing = _HashingWriter(out)
            for chunk in bc.encrypt_chunks(content_key, associated, source, self._hasher.size):
                hashing.write(chunk)
            out.flush()
            if self._fsync:
                os.fsync(out.fileno())
        return path, hashing.sha256.hexdigest(), hashing.size

    def abort(self) -> None:
        try:
            self._gzip.close()
            self._raw.close()
        finally:
            _unlink(self._data_tmp)
            _unlink(self._enc_tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- reading and verifying ----------------------------------------------------------------------

class VerifiedBundle:
    """A bundle whose container, manifest, signatures and recipient were checked.

    Use :func:`open_bundle`.  :meth:`verify_data` checks the data hash and size (of the member
    as stored: the ciphertext of an encrypted bundle), then decrypts (an encrypted bundle) and
    counts the events, streaming; :meth:`iter_lines` yields the event lines.  Close it (or use
    ``with``) to release the file.

    ``verified_algorithms`` are the signature algorithms that verified; ``unverified_algorithms``
    those listed in the manifest that were not checked (not supported by this reader, or no key
    of that algorithm in the trust store for the sender and not required for it).
    ``decrypted`` tells whether the data was decrypted (set by :meth:`verify_data`).
    """

    def __init__(self, path: Path, tar: tarfile.TarFile, manifest: Manifest, key: TrustedKey,
                 unverified_algorithms: tuple, verified_algorithms: tuple = (),
                 content_key: Optional[bytes] = None, verified_keys: tuple = ()):
        self.path = path
        self._tar = tar
        self.manifest = manifest
        self.key = key
        self.keys = verified_keys or (key,)
        self.unverified_algorithms = unverified_algorithms
        self.verified_algorithms = verified_algorithms or (key.algorithm,)
        self._content_key = content_key
        self.hash_verified = False
        self.data_verified = False
        self.decrypted = False

    @property
    def encrypted(self) -> bool:
        return self.manifest.encryption is not None

    def _member(self):
        return self._tar.extractfile(self._tar.getmember(self.manifest.data_member))

    def _data(self):
        """The compressed data: the member itself, or its plaintext (only once its hash, signed in
        the manifest, was checked: nothing unauthenticated is ever decrypted)."""
        if not self.encrypted:
            return self._member()
        if not self.hash_verified:
            raise RuntimeError("the ciphertext's hash must be verified before it is decrypted")
        if self._content_key is None:
            raise BundleError("no-decryption-key", f"{self.path.name}: the data is encrypted to "
                                                   f"{self.manifest.encryption.recipient_key_id}; no decryption "
                                                   "key was given", bc.HPKE_KEM)
        return bc.DecryptingReader(self._member(), self._content_key, self.manifest.binding(), self.manifest.data_size)

    def verify_hash(self) -> None:
        """Size and SHA-256 of the data member as stored, against the signed manifest."""
        m = self.manifest
        sha = hashlib.sha256()
        size = 0
        try:
            fh = self._member()
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                sha.update(chunk)
                size += len(chunk)
        except (tarfile.TarError, OSError) as exc:
            raise BundleError("malformed", f"{self.path.name}: data member unreadable (truncated?): {exc}") from None
        if size != m.data_size or sha.hexdigest() != m.data_sha256:
            raise BundleError("hash-mismatch",
                              f"{self.path.name}: data does not match the signed manifest "
                              f"(sha256 {sha.hexdigest()}, {size} bytes; manifest says {m.data_sha256}, "
                              f"{m.data_size} bytes): tampered or truncated")
        self.hash_verified = True

    def verify_data(self, count_events: bool = True) -> None:
        m = self.manifest
        self.verify_hash()
        if count_events or self.encrypted:
            count = sum(1 for _ in self.iter_lines(check=False))
            if count_events and count != m.event_count:
                raise BundleError("count-mismatch", f"{self.path.name}: data holds {count} events, "
                                                    f"the manifest says {m.event_count}")
        self.decrypted = self.encrypted
        self.data_verified = True

    def iter_lines(self, start: int = 0, check: bool = True) -> Iterator[tuple]:
        """Yield ``(index, line_bytes)`` for every event line from index ``start`` on (0-based).

        A line longer than :data:`MAX_LINE_BYTES` or not UTF-8 raises :class:`BundleError`
        (``malformed``, naming the line): the format says UTF-8, and one huge line must
        not exhaust memory.  Encrypted data that does not decrypt raises ``decryption-failed``."""
        if check and not self.data_verified:
            raise RuntimeError("verify_data() must succeed before the events are read")
        try:
            with gzip.GzipFile(fileobj=self._data(), mode="rb") as gz:
                index = -1
                while True:
                    line = gz.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        return
                    index += 1
                    if len(line) > MAX_LINE_BYTES:
                        raise BundleError("malformed", f"{self.path.name}: event line {index + 1} is longer than "
                                                       f"{MAX_LINE_BYTES} bytes")
                    line = line.rstrip(b"\n")
                    if index < start or not line:
                        continue
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise BundleError("malformed", f"{self.path.name}: event line {index + 1} is not UTF-8 "
                                                       f"(invalid byte at offset {exc.start})") from None
                    yield index, line
        except bc.DecryptionError as exc:
            raise BundleError("decryption-failed", f"{self.path.name}: the data does not decrypt: {exc}",
                              bc.HPKE_KEM) from None
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError) as exc:
            raise BundleError("malformed", f"{self.path.name}: {self.manifest.data_member} is not valid gzip: "
                                           f"{exc}") from None

    def close(self) -> None:
        self._tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_bundle(path: Union[str, Path], trust: TrustStore, recipient: Optional[str] = None,
                decryption_keys: Optional[DecryptionKeys] = None) -> VerifiedBundle:
    """Open a bundle and check structure, manifest, trust, signatures and (if given) recipient.

    Every signature algorithm the trust store requires for the sender must be listed in the
    manifest (else ``downgrade``) and have its signature (else ``missing-signature``); every
    listed algorithm this reader supports is verified when the trust store has keys of it for
    the sender (a failure is ``bad-signature``): a bundle is never accepted on the remaining
    signature.  An encrypted bundle's content key is unwrapped with ``decryption_keys``
    (``wrong-encryption-key`` if none of them is the one it was encrypted to,
    ``decryption-failed`` if HPKE refuses); without ``decryption_keys`` it can be verified
    but not read.

    Raises :class:`BundleError`.  The data is not read yet: call
    :meth:`VerifiedBundle.verify_data` before using the events.
    """
    path = Path(path)
    try:
        tar = tarfile.open(str(path), mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError("malformed", f"{path.name}: not a bundle (tar container unreadable: {exc})") from None
    try:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError) as exc:     # truncated or damaged after the first header
            raise BundleError("malformed", f"{path.name}: not a bundle (tar container damaged: {exc})") from None
        names = tuple(m.name for m in members)
        if names not in MEMBERS_OF.values() or not all(m.isreg() for m in members):
            raise BundleError("malformed", f"{path.name}: container must hold exactly the regular files "
                                           f"{', '.join(MEMBERS)} in that order, found {', '.join(names) or 'none'}")
        if members[0].size > MAX_MANIFEST_BYTES or members[1].size > MAX_MANIFEST_BYTES:
            raise BundleError("malformed", f"{path.name}: manifest or signatures larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            manifest_bytes = tar.extractfile(members[0]).read()
            sig_bytes = tar.extractfile(members[1]).read()
        except (tarfile.TarError, OSError) as exc:
            raise BundleError("malformed", f"{path.name}: not a bundle (tar container damaged: {exc})") from None
        try:
            manifest = Manifest.from_bytes(manifest_bytes)
        except BundleError as exc:          # name the file, as every other check does
            raise BundleError(exc.reason, f"{path.name}: {exc}", exc.algorithm) from None
        if names[2] != manifest.data_member:
            raise BundleError("malformed", f"{path.name}: a format {manifest.format_version} bundle holds "
                                           f"{manifest.data_member}, not {names[2]}")
        shape = '{"signatures": [{"algorithm", "key_id", "value"}, ...]}'
        try:
            sig_doc = inputs.loads_json(sig_bytes, "signatures.json", max_depth=8)
        except inputs.InputError as exc:
            raise BundleError("malformed", f"{path.name}: {_input_error(exc)}; it must be {shape}") from None
        sigs = sig_doc.get("signatures") if isinstance(sig_doc, dict) else None
        if not (isinstance(sigs, list) and all(isinstance(s, dict) for s in sigs)):
            raise BundleError("malformed", f"{path.name}: signatures.json field signatures: must be {shape}")
        known = [a for a in manifest.algorithms if a in VERIFIERS]
        if not known:
            raise BundleError("unsupported-version", f"{path.name}: none of the signature algorithms "
                                                     f"{list(manifest.algorithms)} is supported")
        if manifest.sender not in trust.peers:
            raise BundleError("unknown-sender", f"{path.name}: sender {manifest.sender!r} is not in the trust "
                                                f"store {trust.path}")
        required = trust.required_algorithms(manifest.sender)
        for algorithm in required:
            if algorithm not in manifest.algorithms:
                raise BundleError("downgrade", f"{path.name}: the manifest lists the signature algorithms "
                                               f"{list(manifest.algorithms)}, but the trust store requires "
                                               f"{', '.join(required)} for {manifest.sender!r}: rejected as a "
                                               "downgrade, never accepted on the remaining signature", algorithm)
        listed = [s.get("algorithm") for s in sigs]
        for algorithm in listed:
            if algorithm not in manifest.algorithms:
                raise BundleError("bad-signature", f"{path.name}: signatures.json has a {_shown(algorithm)} "
                                                   "signature the signed manifest does not list")
        trusted, verified, unverified = [], [], []
        for algorithm in manifest.algorithms:
            if algorithm not in VERIFIERS:
                unverified.append(algorithm)
                continue
            entries = [s for s in sigs if s.get("algorithm") == algorithm]
            if not entries:
                raise BundleError("missing-signature", f"{path.name}: the manifest lists algorithm {algorithm} but "
                                                       f"signatures.json has no {algorithm} signature (stripped?)",
                                  algorithm)
            if len(entries) != 1:
                raise BundleError("bad-signature", f"{path.name}: the manifest lists algorithm {algorithm} "
                                                   f"but signatures.json has {len(entries)} signatures for it",
                                  algorithm)
            if algorithm not in required and not trust.has_keys_of(manifest.sender, algorithm):
                unverified.append(algorithm)     # migration: the receiver has no key of it yet
                continue
            entry = entries[0]
            key_id = entry.get("key_id")
            if not isinstance(key_id, str):
                raise BundleError("bad-signature", f"{path.name}: signatures.json: the {algorithm} signature has "
                                                   f"no key_id string", algorithm)
            try:
                key = trust.key(manifest.sender, key_id)
            except BundleError as exc:  # unknown sender/key, revoked key: name the bundle too
                raise BundleError(exc.reason, f"{path.name}: {exc}", algorithm) from None
            if key.algorithm != algorithm:
                raise BundleError("bad-signature", f"{path.name}: key {key.key_id} is not an {algorithm} key",
                                  algorithm)
            try:
                encoded = entry.get("value")
                if not isinstance(encoded, str):
                    raise ValueError("not a string")
                value = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise BundleError("bad-signature", f"{path.name}: {algorithm} signature is not base64",
                                  algorithm) from None
            if not VERIFIERS[algorithm](key.public_key, value, manifest_bytes):
                raise BundleError("bad-signature", f"{path.name}: {algorithm} signature by {key.key_id} does not "
                                                   f"verify: the manifest was altered or not signed by "
                                                   f"{manifest.sender}", algorithm)
            trusted.append(key)
            verified.append(algorithm)
        if not trusted:
            raise BundleError("unknown-key", f"{path.name}: none of the signatures {list(manifest.algorithms)} "
                                             f"is by a key of {manifest.sender!r} in {trust.path}")
        if recipient is not None and manifest.recipient != recipient:
            raise BundleError("wrong-recipient", f"{path.name}: bundle is addressed to {manifest.recipient!r}, "
                                                 f"this hub is {recipient!r}")
        content_key = None
        if manifest.encryption is not None and decryption_keys is not None:
            kid = manifest.encryption.recipient_key_id
            private = decryption_keys.get(kid)
            if private is None:
                raise BundleError("wrong-encryption-key", f"{path.name}: the data is encrypted to {kid}, which is "
                                                          f"none of this hub's decryption keys "
                                                          f"({', '.join(decryption_keys.keys)})", bc.HPKE_KEM)
            content_key = bc.unwrap_content_key(private, manifest.encryption.enc, manifest.encryption.wrapped_key,
                                                manifest.binding())
            if content_key is None:
                raise BundleError("decryption-failed", f"{path.name}: the content key does not decrypt with {kid} "
                                                       "(encapsulated key or sealed key altered)", bc.HPKE_KEM)
        return VerifiedBundle(path, tar, manifest, trusted[0], tuple(unverified), tuple(verified), content_key,
                              tuple(trusted))
    except BaseException:
        tar.close()
        raise


def verify_bundle(path: Union[str, Path], trust: TrustStore, recipient: Optional[str] = None,
                  decryption_keys: Optional[DecryptionKeys] = None) -> Manifest:
    """Full verification (signature, recipient, hash, decryption, count), streaming; returns the manifest."""
    with open_bundle(path, trust, recipient, decryption_keys) as bundle:
        bundle.verify_data()
        return bundle.manifest


def iter_events(bundle: VerifiedBundle, start: int = 0) -> Iterator[tuple]:
    """``(index, dict)`` per event; a line that is not a JSON object raises BundleError naming its index."""
    for index, line in bundle.iter_lines(start):
        try:
            event = inputs.loads_json(line, bundle.path.name, line=index + 1)
        except inputs.InputError as exc:
            raise BundleError("malformed", _input_error(exc)) from None
        if not isinstance(event, dict):
            raise BundleError("malformed", f"{bundle.path.name}: event line {index + 1} is not a JSON object "
                                           f"but {inputs.kind_of(event)}")
        yield index, event


def write_bundle(directory, sender, recipient, sequence, signing_key, events: Iterable[dict], **kwargs) -> Path:
    """Convenience: write ``events`` (dicts) into one sealed bundle and return its path."""
    with BundleWriter(directory, sender, recipient, sequence, signing_key, **kwargs) as writer:
        for event in events:
            writer.write_event(event)
    return writer.path
