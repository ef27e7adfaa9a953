"""The cryptography of exchange bundles: signature algorithms, the hybrid encryption key, key files.

Everything here is `cryptography`'s (FIPS 203 ML-KEM, FIPS 204 ML-DSA, RFC 8032 Ed25519,
RFC 9180 HPKE, AES-256-GCM); nothing is a hand-made primitive.  docs/exchange-format.md is
the specification, docs/security.md the rationale.

Signature algorithms (the ``algorithm`` of a trust store key and of a signature):

``ed25519``
    RFC 8032 Ed25519 over the manifest bytes; public key: the raw 32 bytes.
``ml-dsa-65``
    FIPS 204 ML-DSA-65 (the default "hedged" signing) over the manifest bytes with the
    context string :data:`MLDSA_CONTEXT`; public key: the raw 1952 bytes.

Encryption key (``mlkem768-x25519``): an HPKE (RFC 9180) key of the hybrid KEM
MLKEM768-X25519, used with HKDF-SHA256 and AES-256-GCM; public key: the raw ML-KEM-768
public key (1184 bytes) followed by the raw X25519 public key (32 bytes).

The data member of an encrypted bundle: HPKE (single shot) seals a fresh 32-byte content key
to the recipient, with the bundle's :func:`binding` as HPKE ``info``; the data is then
AES-256-GCM in chunks of :data:`CHUNK_PLAIN` bytes (the STREAM construction: nonce = 11-byte
big-endian chunk number + one byte, 1 on the last chunk, else 0; associated data = the
binding), so reading and writing stay streaming.  ``cryptography``'s HPKE is single shot, and
a single shot over a whole bundle would hold it in memory.

Key ids: ``<algorithm>:`` + the first 32 hex digits of the SHA-256 of the raw public key.

Key files are PEM files of PKCS#8 private keys (optionally all encrypted with one passphrase):
a signing key file holds one Ed25519 and/or one ML-DSA-65 key; a decryption key file holds
one or more HPKE keys, each an ML-KEM-768 key immediately followed by its X25519 key.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.fingerprint import digest

__all__ = [
    "ED25519", "ML_DSA_65", "HPKE_KEM", "SIGNATURE_ALGORITHMS", "ENCRYPTION_ALGORITHMS", "KEY_ALGORITHMS",
    "MLDSA_CONTEXT", "CHUNK_PLAIN", "CHUNK_CIPHER", "ENC_LENGTH", "WRAPPED_KEY_LENGTH", "ENCRYPTION_PARAMETERS",
    "KeyFileError", "HybridKEMPrivateKey", "HybridKEMPublicKey", "SigningKeys", "DecryptionKeys",
    "algorithm_of", "raw_public", "public_from_raw", "public_length", "key_id", "public_b64", "sign", "verify",
    "generate", "private_pem", "read_key_file", "binding", "wrap_content_key", "unwrap_content_key",
    "encrypt_chunks", "DecryptingReader", "ciphertext_size",
]

ED25519 = "ed25519"
ML_DSA_65 = "ml-dsa-65"
HPKE_KEM = "mlkem768-x25519"
SIGNATURE_ALGORITHMS = (ED25519, ML_DSA_65)
ENCRYPTION_ALGORITHMS = (HPKE_KEM,)
KEY_ALGORITHMS = SIGNATURE_ALGORITHMS + ENCRYPTION_ALGORITHMS
#: FIPS 204 context string of the ML-DSA-65 manifest signature (domain separation).
MLDSA_CONTEXT = b"intelmq-crossborder-bundle-manifest"
#: The HPKE suite: KEM MLKEM768-X25519, KDF HKDF-SHA256, AEAD AES-256-GCM.
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
#: The manifest's ``encryption`` fields that name the suite (fixed in format 2.0).
ENCRYPTION_PARAMETERS = {"kem": "MLKEM768-X25519", "kdf": "HKDF-SHA256", "aead": "AES-256-GCM",
                         "content": "AES-256-GCM-STREAM"}
ENC_LENGTH = hpke.KEM.MLKEM768_X25519.enc_length()          # 1120 = 1088 (ML-KEM-768) + 32 (X25519)
CONTENT_KEY_LENGTH = 32
TAG_LENGTH = 16
WRAPPED_KEY_LENGTH = CONTENT_KEY_LENGTH + TAG_LENGTH
CHUNK_PLAIN = 65536
CHUNK_CIPHER = CHUNK_PLAIN + TAG_LENGTH
MAX_KEY_FILE_BYTES = 64 * 1024
_PUBLIC_LENGTHS = {ED25519: 32, ML_DSA_65: 1952, HPKE_KEM: 1184 + 32}
_PEM_BLOCK = re.compile(rb"-----BEGIN ((?:ENCRYPTED )?PRIVATE KEY)-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----")


class KeyFileError(CrossBorderError):
    """A key file cannot be used; the message names the file, never key material."""


# --- the hybrid KEM key --------------------------------------------------------------------------

@dataclass(frozen=True)
class HybridKEMPublicKey:
    """The recipient's HPKE public key: ML-KEM-768 + X25519."""

    mlkem: MLKEM768PublicKey
    x25519: X25519PublicKey

    def raw(self) -> bytes:
        return self.mlkem.public_bytes_raw() + self.x25519.public_bytes_raw()

    def hpke(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(self.mlkem, self.x25519)

    @classmethod
    def from_raw(cls, raw: bytes) -> "HybridKEMPublicKey":
        if len(raw) != _PUBLIC_LENGTHS[HPKE_KEM]:
            raise ValueError(f"an {HPKE_KEM} public key is {_PUBLIC_LENGTHS[HPKE_KEM]} bytes, not {len(raw)}")
        return cls(MLKEM768PublicKey.from_public_bytes(raw[:1184]), X25519PublicKey.from_public_bytes(raw[1184:]))


@dataclass(frozen=True)
class HybridKEMPrivateKey:
    """This hub's HPKE private key: ML-KEM-768 + X25519."""

    mlkem: MLKEM768PrivateKey
    x25519: X25519PrivateKey

    @classmethod
    def generate(cls) -> "HybridKEMPrivateKey":
        return cls(MLKEM768PrivateKey.generate(), X25519PrivateKey.generate())

    def public_key(self) -> HybridKEMPublicKey:
        return HybridKEMPublicKey(self.mlkem.public_key(), self.x25519.public_key())

    def hpke(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(self.mlkem, self.x25519)


PrivateKey = Union[Ed25519PrivateKey, MLDSA65PrivateKey, HybridKEMPrivateKey]
PublicKey = Union[Ed25519PublicKey, MLDSA65PublicKey, HybridKEMPublicKey]


def algorithm_of(key) -> str:
    """The algorithm name of a supported private or public key."""
    if isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
        return ED25519
    if isinstance(key, (MLDSA65PrivateKey, MLDSA65PublicKey)):
        return ML_DSA_65
    if isinstance(key, (HybridKEMPrivateKey, HybridKEMPublicKey)):
        return HPKE_KEM
    raise TypeError(f"not a supported bundle key: {type(key).__name__}")


def _public(key):
    return key.public_key() if isinstance(key, (Ed25519PrivateKey, MLDSA65PrivateKey, HybridKEMPrivateKey)) else key


def raw_public(key) -> bytes:
    """The raw public key (the bytes the trust store holds, base64) of a private or public key."""
    public = _public(key)
    if isinstance(public, HybridKEMPublicKey):
        return public.raw()
    algorithm_of(public)
    return public.public_bytes_raw()


def public_from_raw(algorithm: str, raw: bytes):
    """A public key of ``algorithm`` from its raw bytes; ValueError if they are not one."""
    expected = _PUBLIC_LENGTHS.get(algorithm)
    if expected is None:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    if len(raw) != expected:
        raise ValueError(f"an {algorithm} public key is {expected} bytes, not {len(raw)}")
    if algorithm == ED25519:
        return Ed25519PublicKey.from_public_bytes(raw)
    if algorithm == ML_DSA_65:
        return MLDSA65PublicKey.from_public_bytes(raw)
    return HybridKEMPublicKey.from_raw(raw)


def public_length(algorithm: str) -> int:
    """The length in bytes of a raw public key of ``algorithm``."""
    return _PUBLIC_LENGTHS[algorithm]


def public_b64(key) -> str:
    return base64.b64encode(raw_public(key)).decode("ascii")


def key_id(key) -> str:
    """``<algorithm>:`` + the first 32 hex digits of the SHA-256 of the raw public key."""
    return f"{algorithm_of(key)}:{digest(raw_public(key))[:32]}"


def sign(key: Union[Ed25519PrivateKey, MLDSA65PrivateKey], data: bytes) -> bytes:
    if isinstance(key, MLDSA65PrivateKey):
        return key.sign(data, MLDSA_CONTEXT)
    return key.sign(data)


def verify(algorithm: str, public, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``algorithm``'s signature of ``data`` by ``public``."""
    try:
        if algorithm == ED25519 and isinstance(public, Ed25519PublicKey):
            public.verify(signature, data)
        elif algorithm == ML_DSA_65 and isinstance(public, MLDSA65PublicKey):
            public.verify(signature, data, MLDSA_CONTEXT)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def generate(algorithm: str) -> PrivateKey:
    if algorithm == ED25519:
        return Ed25519PrivateKey.generate()
    if algorithm == ML_DSA_65:
        return MLDSA65PrivateKey.generate()
    if algorithm == HPKE_KEM:
        return HybridKEMPrivateKey.generate()
    raise ValueError(f"unsupported algorithm {algorithm!r} (supported: {', '.join(KEY_ALGORITHMS)})")


def private_pem(key: PrivateKey, passphrase: Optional[bytes] = None) -> bytes:
    """PKCS#8 PEM of a private key (an HPKE key: its ML-KEM-768 block, then its X25519 block)."""
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    parts = [key.mlkem, key.x25519] if isinstance(key, HybridKEMPrivateKey) else [key]
    return b"".join(part.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
                    for part in parts)


def read_key_file(path: Union[str, Path], passphrase: Optional[bytes] = None, what: str = "key") -> List[PrivateKey]:
    """The private keys of a PEM key file, in order (an ML-KEM-768 key and the X25519 key after
    it become one :class:`HybridKEMPrivateKey`).  :class:`KeyFileError` names the file and the
    block (1-based), never the key material."""
    try:
        path = Path(path)
        if path.is_dir():
            raise KeyFileError(f"{path}: cannot read {what}: is a directory")
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: cannot read {what}: larger than {MAX_KEY_FILE_BYTES} bytes, not a PEM key file")
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise KeyFileError(f"{path}: not a readable PEM private key file ({what}): no PEM private key block")
    rest = _PEM_BLOCK.sub(b"", data)
    if rest.strip():
        raise KeyFileError(f"{path}: text outside the PEM private key blocks ({what})")
    loaded = []
    for number, block in enumerate(blocks, 1):
        try:
            loaded.append(serialization.load_pem_private_key(block, password=passphrase))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path}: key {number} is not a readable PEM private key ({type(exc).__name__}"
                               f"{': wrong or missing passphrase?' if b'ENCRYPTED' in block else ''})") from None
    keys: List[PrivateKey] = []
    i = 0
    while i < len(loaded):
        key = loaded[i]
        if isinstance(key, MLKEM768PrivateKey):
            if i + 1 >= len(loaded) or not isinstance(loaded[i + 1], X25519PrivateKey):
                raise KeyFileError(f"{path}: key {i + 1} (ML-KEM-768) is not followed by its X25519 key: an "
                                   f"{HPKE_KEM} key is the two, in that order")
            keys.append(HybridKEMPrivateKey(key, loaded[i + 1]))
            i += 2
            continue
        if not isinstance(key, (Ed25519PrivateKey, MLDSA65PrivateKey)):
            raise KeyFileError(f"{path}: key {i + 1} is a {type(key).__name__.replace('PrivateKey', '')} key; a "
                               f"bundle key file holds {', '.join(KEY_ALGORITHMS)} keys only")
        keys.append(key)
        i += 1
    return keys


# --- key sets ----------------------------------------------------------------------------------

class SigningKeys:
    """The sender's signing keys: at most one per signature algorithm, in the order of
    :data:`SIGNATURE_ALGORITHMS` (``ed25519`` first)."""

    def __init__(self, keys: Sequence[Union[Ed25519PrivateKey, MLDSA65PrivateKey]]):
        by_algorithm: Dict[str, object] = {}
        for key in keys:
            algorithm = algorithm_of(key)
            if algorithm not in SIGNATURE_ALGORITHMS:
                raise ValueError(f"a {algorithm} key does not sign")
            if algorithm in by_algorithm:
                raise ValueError(f"two {algorithm} keys: a signing key set holds one key per algorithm")
            by_algorithm[algorithm] = key
        if not by_algorithm:
            raise ValueError("no signing key")
        self.keys = {a: by_algorithm[a] for a in SIGNATURE_ALGORITHMS if a in by_algorithm}

    @classmethod
    def of(cls, value) -> "SigningKeys":
        """``value`` itself (a SigningKeys), or a set of one key or of a list of keys."""
        if isinstance(value, SigningKeys):
            return value
        return cls(list(value) if isinstance(value, (list, tuple)) else [value])

    @classmethod
    def from_file(cls, path: Union[str, Path], passphrase: Optional[bytes] = None) -> "SigningKeys":
        keys = read_key_file(path, passphrase, "signing key")
        try:
            return cls(keys)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not a signing key file: {exc}") from None

    @property
    def algorithms(self) -> Tuple[str, ...]:
        return tuple(self.keys)

    def key_ids(self) -> List[str]:
        return [key_id(k) for k in self.keys.values()]

    def sign_all(self, data: bytes) -> List[dict]:
        """One ``signatures.json`` entry per key."""
        return [{"algorithm": a, "key_id": key_id(k), "value": base64.b64encode(sign(k, data)).decode("ascii")}
                for a, k in self.keys.items()]


class DecryptionKeys:
    """This hub's HPKE private keys (several during a rotation), looked up by key id."""

    def __init__(self, keys: Sequence[HybridKEMPrivateKey]):
        self.keys: Dict[str, HybridKEMPrivateKey] = {}
        for key in keys:
            if not isinstance(key, HybridKEMPrivateKey):
                raise ValueError(f"a {algorithm_of(key)} key does not decrypt bundles")
            self.keys[key_id(key)] = key
        if not self.keys:
            raise ValueError("no decryption key")

    @classmethod
    def from_file(cls, path: Union[str, Path], passphrase: Optional[bytes] = None) -> "DecryptionKeys":
        keys = read_key_file(path, passphrase, "decryption key")
        try:
            return cls(keys)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not a decryption key file: {exc}") from None

    def get(self, kid: str) -> Optional[HybridKEMPrivateKey]:
        return self.keys.get(kid)


# --- encryption of the data member --------------------------------------------------------------

def binding(format_major: int, bundle_id: str, sender: str, recipient: str, sequence: int,
            recipient_key_id: str) -> bytes:
    """The bytes that bind the ciphertext to one bundle: HPKE ``info`` and the associated data
    of every chunk.  ASCII lines (the values are restricted to ASCII by the manifest rules)."""
    return (f"intelmq-crossborder-bundle {format_major}\n{bundle_id}\n{sender}\n{recipient}\n{sequence}\n"
            f"{recipient_key_id}\n").encode("ascii")


def wrap_content_key(recipient: HybridKEMPublicKey, info: bytes) -> Tuple[bytes, bytes, bytes]:
    """``(content key, enc, wrapped key)``: a fresh content key sealed to ``recipient`` by HPKE."""
    content_key = os.urandom(CONTENT_KEY_LENGTH)
    sealed = SUITE.encrypt(content_key, recipient.hpke(), info=info)
    return content_key, sealed[:ENC_LENGTH], sealed[ENC_LENGTH:]


def unwrap_content_key(private: HybridKEMPrivateKey, enc: bytes, wrapped: bytes, info: bytes) -> Optional[bytes]:
    """The content key, or None if HPKE refuses (wrong key, altered ``enc`` or ``info``)."""
    if len(enc) != ENC_LENGTH or len(wrapped) != WRAPPED_KEY_LENGTH:
        return None
    try:
        key = SUITE.decrypt(enc + wrapped, private.hpke(), info=info)
    except (InvalidTag, ValueError):
        return None
    return key if len(key) == CONTENT_KEY_LENGTH else None


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def ciphertext_size(plain_size: int) -> int:
    """The size of the encrypted data member for ``plain_size`` bytes of compressed data."""
    chunks = max(1, -(-plain_size // CHUNK_PLAIN))
    return plain_size + chunks * TAG_LENGTH


def encrypt_chunks(content_key: bytes, associated: bytes, source, plain_size: int) -> Iterator[bytes]:
    """The encrypted chunks of the ``plain_size`` bytes read from the binary file ``source``."""
    aead = AESGCM(content_key)
    chunks = max(1, -(-plain_size // CHUNK_PLAIN))
    for index in range(chunks):
        chunk = source.read(CHUNK_PLAIN)
        last = index == chunks - 1
        expected = plain_size - index * CHUNK_PLAIN if last else CHUNK_PLAIN
        if len(chunk) != expected:
            raise OSError(f"the data changed while it was encrypted (chunk {index}: {len(chunk)} bytes, "
                          f"expected {expected})")
        yield aead.encrypt(_nonce(index, last), chunk, associated)
    if source.read(1):
        raise OSError("the data grew while it was encrypted")


class DecryptionError(ValueError):
    """A chunk of the data does not decrypt (altered, truncated or reordered)."""


class DecryptingReader:
    """A binary reader of the plaintext of an encrypted data member of ``size`` bytes.

    Every chunk is authenticated before any of its bytes is returned; a chunk that does not
    decrypt raises :class:`DecryptionError` naming it."""

    def __init__(self, source, content_key: bytes, associated: bytes, size: int):
        self._source = source
        self._aead = AESGCM(content_key)
        self._associated = associated
        self._remaining = size
        self._index = 0
        self._buffer = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        want = min(CHUNK_CIPHER, self._remaining)
        data = self._source.read(want)
        if len(data) != want or want < TAG_LENGTH:
            raise DecryptionError(f"chunk {self._index} is truncated")
        self._remaining -= want
        last = self._remaining == 0
        try:
            plain = self._aead.decrypt(_nonce(self._index, last), data, self._associated)
        except InvalidTag:
            raise DecryptionError(f"chunk {self._index} does not decrypt (altered, truncated or not "
                                  "encrypted for this bundle)") from None
        if not last and len(plain) != CHUNK_PLAIN:          # cannot happen with CHUNK_CIPHER reads
            raise DecryptionError(f"chunk {self._index} is short")
        self._index += 1
        self._done = last
        return plain

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1); b"" at the end."""
        if size is None or size < 0:
            parts = [self._buffer[self._pos:]]
            while not self._done:
                parts.append(self._next_chunk())
            self._buffer, self._pos = b"", 0
            return b"".join(parts)
        while self._pos >= len(self._buffer) and not self._done:
            self._buffer, self._pos = self._next_chunk(), 0
        data = self._buffer[self._pos:self._pos + size]          # at most one chunk: GzipFile asks again
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass
