"""Known-answer vectors: what hubs must agree on byte for byte, as fixed expected values.

Two hubs running different releases must compute the same fingerprint for the same event
(de-duplication across the network), the same keyed pseudonym for the same value and key
(recipients correlate across copies), the same derived event ids and the same MISP event
UUID (idempotent pushes).  A change here is a change of the exchange format: it needs a
version bump (``FINGERPRINT_VERSION``) and a note to every peer, never a new expected value
copied from the output.  Each vector is also recomputed from its written definition with
hashlib/hmac/uuid, so the expected values are not merely what the code printed once.
"""
import hashlib
import hmac
import ipaddress
import json
import uuid
from pathlib import Path

import pytest

from intelmq_crossborder.core import fingerprint as fp
from intelmq_crossborder.formats.misp import convert as misp, push as misp_push
from intelmq_crossborder.policy.redact import hidden_event_uuid, HIDDEN_UUID_NAMESPACE, pseudonym
EVENT = {"feed.name": "Sensor AT", "time.observation": "2026-11-30T10:00:00+00:00", "source.ip": "192.0.2.1",
         "source.port": 443, "classification.type": "scanner", "classification.taxonomy": "information-gathering",
         "time.source": "2026-11-30T09:58:00+00:00", "sharing.tlp": "GREEN"}
KEY = b"known-answer-key"
ORIGINATOR_UUID = "5f1c3c1e-2b7a-4c84-9a43-0c1b8f0e1a77"


def test_fingerprint():
    expected = "c560e532728ee523a561ef4d2069dc6c402862ac0f460d25a529fa4ffb6ea175"
    assert fp.fingerprint(EVENT) == expected
    # the definition: sha256 of the canonical JSON [version, identifying fields]
    body = json.dumps([1, {"classification.taxonomy": "information-gathering", "classification.type": "scanner",
                           "source.ip": "192.0.2.1", "source.port": 443,
                           "time.source": "2026-11-30T09:58:00+00:00"}], sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(body.encode()).hexdigest() == expected


@pytest.mark.parametrize("value,field_type,expected", [
    ("192.0.2.1", "IPAddress", "fd70:b984:1cee:bb54:dc42:43d1:825c:687f"),
    ("192.0.2.0/24", "IPNetwork", "fd52:680f:6343:5128:e120:3feb:3d9d:398d/128"),
    ("evil.example", "FQDN", "d14d44c6766456f51dec6fd60eeca4b6.pseudonym.invalid"),
    ("https://evil.example/x", "URL", "https://e6a6df6f199fd8dec891faacee21e3c3.pseudonym.invalid/"),
    ("alice", "String", "pseudo-8ee72c746339933667e9bee2e38e8767"),
    ("ACC", "UppercaseString", "PSEUDO-74AB0C513D689708AA41288013408FAD"),
])
def test_keyed_pseudonyms(value, field_type, expected):
    assert pseudonym(value, KEY, field_type) == expected
    digest = hmac.new(KEY, value.encode(), hashlib.sha256).digest()
    if field_type in ("IPAddress", "IPNetwork"):
        address = str(ipaddress.IPv6Address(b"\xfd" + digest[:15]))
        assert expected == (address if field_type == "IPAddress" else address + "/128")
    else:
        assert digest[:16].hex() in expected.lower()


def test_derived_event_ids():
    unkeyed, keyed = "b41f6ee0-af93-582b-ad53-4eabcb3f751a", "264c3b4c-1140-485b-b37f-575dec823dc0"
    assert hidden_event_uuid(ORIGINATOR_UUID) == unkeyed
    assert hidden_event_uuid(ORIGINATOR_UUID, KEY) == keyed
    assert str(uuid.uuid5(HIDDEN_UUID_NAMESPACE, ORIGINATOR_UUID)) == unkeyed


def test_misp_event_uuids():
    settings = misp_push.PushSettings(recipient="de-hub")
    plain = "e2711ae0-0ab6-59d5-af0d-db3e50935cae"
    assert misp_push.target_event_uuid(EVENT, settings) == plain
    assert str(uuid.uuid5(misp.UUID_NAMESPACE, "de-hub|feed:Sensor AT:2026-11-30")) == plain
    shown = {k: v for k, v in EVENT.items() if k != "feed.name"}      # the agreement hides the feed
    assert misp_push.target_event_uuid(EVENT, settings, shown) == "93c29dda-8b41-5816-bfaf-65ff9364fba2"
    keyed = misp_push.PushSettings(recipient="de-hub", uuid_key=KEY)
    assert misp_push.target_event_uuid(EVENT, keyed, shown) == "6c561830-507b-5fdd-82c6-c6e4d1342406"


# --- exchange bundles (docs/exchange-format.md) ----------------------------------------------------

BUNDLE_KEY_SEED = hashlib.sha256(b"known-answer bundle key").digest()
BUNDLE_EVENTS = [{"source.ip": "192.0.2.1", "classification.type": "scanner", "sharing.tlp": "GREEN"},
                 {"source.fqdn": "b\u00fccher.example", "extra.n": 2, "sharing.tlp": "AMBER"}]


def test_bundle_hashes(tmp_path, monkeypatch):
    """A bundle written from fixed events with a fixed key at fixed times: the key id, the data
    member's SHA-256 and size, the manifest bytes (what is signed) and the Ed25519 signature are
    fixed values.  The data is written uncompressed (gzip level 0, mtime 0, no file name), so the
    values do not depend on the zlib build."""
    import base64
    import datetime as dt
    import gzip
    import tarfile

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from intelmq_crossborder.formats import bundle as b

    key = Ed25519PrivateKey.from_private_bytes(BUNDLE_KEY_SEED)
    created = dt.datetime(2026, 11, 30, 2, 0, 0, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(b, "utcnow", lambda: created)
    with b.BundleWriter(tmp_path, "de-hub", "fr-hub", 7, key, compresslevel=0,
                        window_start=dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.timezone.utc),
                        bundle_id="6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11") as writer:
        for event in BUNDLE_EVENTS:
            writer.write_event(event)
    key_id = "ed25519:b41b2adcbd02918391e9d3ca1b62d323"
    data_sha256, data_size = "51d19b9b9f832ca5c479952fbe3333276cae7225e94b459dae668362ce1908e2", 171
    manifest_bytes = (
        b'{"bundle_id":"6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11","created":"2026-11-30T02:00:00Z","data":'
        b'{"compression":"gzip","encoding":"jsonl","member":"data.jsonl.gz","sha256":'
        b'"51d19b9b9f832ca5c479952fbe3333276cae7225e94b459dae668362ce1908e2","size":171},"event_count":2,'
        b'"format":"intelmq-crossborder-bundle","format_version":"1.0","recipient":"fr-hub","sender":"de-hub",'
        b'"sequence":7,"signature":{"algorithms":["ed25519"]},"window":{"end":"2026-11-30T02:00:00Z",'
        b'"start":"2026-11-29T02:00:00Z"}}\n')
    manifest_sha256 = "82aa54f3ac60b75a845b758384cc5f99e65bd911b473e8899cf39cffd01ec709"
    signature = ("a/GyGrhTqa2OWwmp7i5P+DuFPfzzJlr+5TtBjlAfS86IT0jdVA3Y2m6HDhuwLzk3OgQHcnGVGfRyUnNc/8tDBQ==")
    lines_sha256 = "72e37bc6e645df77e19a251981cbcf205d4eddce44bb11fb05d8750b8bd6b23d"

    assert writer.path.name == "de-hub_fr-hub_0000000007_6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11.xbundle"
    assert b.key_id_of(key) == key_id
    assert (writer.manifest.data_sha256, writer.manifest.data_size) == (data_sha256, data_size)
    assert writer.manifest.to_bytes() == manifest_bytes
    with tarfile.open(writer.path) as tar:
        members = {name: tar.extractfile(name).read() for name in b.MEMBERS}
    assert members["manifest.json"] == manifest_bytes
    (entry,) = json.loads(members["signatures.json"])["signatures"]
    assert entry == {"algorithm": "ed25519", "key_id": key_id, "value": signature}
    # the definitions, recomputed
    raw_public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert key_id == "ed25519:" + hashlib.sha256(raw_public).hexdigest()[:32]
    assert hashlib.sha256(members["data.jsonl.gz"]).hexdigest() == data_sha256
    assert len(members["data.jsonl.gz"]) == data_size
    assert hashlib.sha256(manifest_bytes).hexdigest() == manifest_sha256
    lines = b"".join(json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                     for e in BUNDLE_EVENTS)
    assert gzip.decompress(members["data.jsonl.gz"]) == lines
    assert hashlib.sha256(lines).hexdigest() == lines_sha256
    key.public_key().verify(base64.b64decode(signature), manifest_bytes)      # Ed25519 (RFC 8032) is deterministic
    assert key.sign(manifest_bytes) == base64.b64decode(signature)
    trust = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"keys": [
        {"algorithm": "ed25519", "public_key": base64.b64encode(raw_public).decode()}]}}})
    assert b.verify_bundle(writer.path, trust, "fr-hub").sequence == 7


# --- post-quantum bundles: format 1.1 (hybrid) and 2.0 (encrypted) ---------------------------------

PQ_SEEDS = {"ml-dsa-65": hashlib.sha256(b"known-answer ml-dsa-65").digest(),                    # 32 bytes
            "ml-kem-768": hashlib.sha512(b"known-answer ml-kem-768").digest(),                   # 64 bytes
            "x25519": hashlib.sha256(b"known-answer x25519").digest()}
PQ_VECTOR = Path(__file__).parent / "fixtures" / "exchange" / "vector-2.0"
PQ_BUNDLE_ID = "9d2c8a41-5b7e-4f1a-8c3d-2e6f0a9b1c47"


def pq_keys():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from intelmq_crossborder.formats import bundle_crypto as bc
    return (Ed25519PrivateKey.from_private_bytes(BUNDLE_KEY_SEED),
            MLDSA65PrivateKey.from_seed_bytes(PQ_SEEDS["ml-dsa-65"]),
            bc.HybridKEMPrivateKey(MLKEM768PrivateKey.from_seed_bytes(PQ_SEEDS["ml-kem-768"]),
                                   X25519PrivateKey.from_private_bytes(PQ_SEEDS["x25519"])))


def pq_trust():
    from intelmq_crossborder.formats import bundle as b
    from intelmq_crossborder.formats import trust_skeleton
    ed, ml, kem = pq_keys()
    return b.TrustStore.from_dict({"version": 1, "peers": {
        "de-hub": trust_skeleton.peer_entry("DE", [ed, ml]), "fr-hub": trust_skeleton.peer_entry("FR", [kem])}})


def write_pq_vector(directory, monkeypatch, encrypt=True):
    """The bundle of the known-answer vector: fixed keys, events, times and bundle id."""
    import datetime as dt

    from intelmq_crossborder.formats import bundle as b
    ed, ml, _kem = pq_keys()
    monkeypatch.setattr(b, "utcnow", lambda: dt.datetime(2026, 11, 30, 2, 0, 0, tzinfo=dt.timezone.utc))
    with b.BundleWriter(directory, "de-hub", "fr-hub", 7, b.SigningKeys([ed, ml]), compresslevel=0,
                        window_start=dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.timezone.utc), bundle_id=PQ_BUNDLE_ID,
                        encrypt_to=pq_trust().encryption_key("fr-hub") if encrypt else None) as writer:
        for event in BUNDLE_EVENTS:
            writer.write_event(event)
    return writer


PQ_KEY_IDS = ("ed25519:b41b2adcbd02918391e9d3ca1b62d323", "ml-dsa-65:3514a3e19969ef7dbd2d643a719a97d7",
              "mlkem768-x25519:e9260f37cef5ac0f3c0e438e2ec103e9")
#: every field of the 2.0 manifest that does not come from the randomized encryption
PQ_MANIFEST_FIXED = {
    "bundle_id": PQ_BUNDLE_ID, "created": "2026-11-30T02:00:00Z", "event_count": 2,
    "format": "intelmq-crossborder-bundle", "format_version": "2.0", "recipient": "fr-hub", "sender": "de-hub",
    "sequence": 7, "signature": {"algorithms": ["ed25519", "ml-dsa-65"]},
    "window": {"end": "2026-11-30T02:00:00Z", "start": "2026-11-29T02:00:00Z"}}


def independent_decrypt(manifest: dict, ciphertext: bytes, kem) -> bytes:
    """The data member decrypted from the specification alone (docs/exchange-format.md), with
    cryptography's HPKE and AES-GCM: a second implementation of the reader's decryption."""
    import base64

    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    enc = manifest["encryption"]
    info = (f"intelmq-crossborder-bundle 2\n{manifest['bundle_id']}\n{manifest['sender']}\n{manifest['recipient']}\n"
            f"{manifest['sequence']}\n{enc['recipient_key_id']}\n").encode()
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    content_key = suite.decrypt(base64.b64decode(enc["enc"]) + base64.b64decode(enc["wrapped_key"]),
                                hpke.MLKEM768X25519PrivateKey(kem.mlkem, kem.x25519), info=info)
    aead, out = AESGCM(content_key), []
    records = [ciphertext[i:i + 65552] for i in range(0, len(ciphertext), 65552)] or [b""]
    for index, record in enumerate(records):
        nonce = index.to_bytes(11, "big") + (b"\x01" if index == len(records) - 1 else b"\x00")
        out.append(aead.decrypt(nonce, record, info))
    return b"".join(out)


def _pq_key_ids():
    from intelmq_crossborder.formats import bundle_crypto as bc
    return tuple(bc.key_id(k) for k in pq_keys())


def test_pq_key_ids_and_public_keys():
    """Keys from fixed seeds (FIPS 204 ML-DSA seed, FIPS 203 ML-KEM seed d||z, X25519 scalar): fixed key
    ids, each the algorithm + the first 32 hex digits of the SHA-256 of the raw public key."""
    from intelmq_crossborder.formats import bundle_crypto as bc
    ed, ml, kem = pq_keys()
    assert _pq_key_ids() == PQ_KEY_IDS
    assert len(bc.raw_public(ml)) == 1952 and len(bc.raw_public(kem)) == 1184 + 32
    assert bc.raw_public(kem) == kem.mlkem.public_key().public_bytes_raw() + kem.x25519.public_key().public_bytes_raw()
    for key, kid in zip((ed, ml, kem), PQ_KEY_IDS):
        assert kid.split(":")[1] == hashlib.sha256(bc.raw_public(key)).hexdigest()[:32]


def test_pq_hybrid_bundle_layout(tmp_path, monkeypatch):
    """Format 1.1: the 1.0 manifest with both algorithms listed; Ed25519 over it is deterministic,
    ML-DSA-65 (hedged) is verified."""
    import tarfile
    writer = write_pq_vector(tmp_path, monkeypatch, encrypt=False)
    manifest = json.loads(writer.manifest.to_bytes())
    assert manifest["format_version"] == "1.1" and manifest["signature"] == {"algorithms": ["ed25519", "ml-dsa-65"]}
    assert (manifest["data"]["sha256"], manifest["data"]["size"]) == (
        "51d19b9b9f832ca5c479952fbe3333276cae7225e94b459dae668362ce1908e2", 171)        # as in format 1.0
    with tarfile.open(writer.path) as tar:
        mbytes = tar.extractfile("manifest.json").read()
        sigs = json.loads(tar.extractfile("signatures.json").read())["signatures"]
    ed, ml, _ = pq_keys()
    assert [s["algorithm"] for s in sigs] == ["ed25519", "ml-dsa-65"]
    assert [s["key_id"] for s in sigs] == list(PQ_KEY_IDS[:2])
    import base64
    assert base64.b64decode(sigs[0]["value"]) == ed.sign(mbytes)
    ml.public_key().verify(base64.b64decode(sigs[1]["value"]), mbytes, b"intelmq-crossborder-bundle-manifest")
    assert len(base64.b64decode(sigs[1]["value"])) == 3309


def test_pq_encrypted_bundle_layout(tmp_path, monkeypatch):
    """Format 2.0 from fixed keys and events: every field that is not randomized is fixed; the
    randomized ones (HPKE encapsulation, content key, so the ciphertext hash) are checked by an
    independent decryption to the fixed lines."""
    import tarfile

    from intelmq_crossborder.formats import bundle as b
    writer = write_pq_vector(tmp_path, monkeypatch)
    with tarfile.open(writer.path) as tar:
        assert tar.getnames() == list(b.MEMBERS)
        mbytes = tar.extractfile("manifest.json").read()
        ciphertext = tar.extractfile("data.jsonl.gz").read()
    manifest = json.loads(mbytes)
    assert {k: manifest[k] for k in PQ_MANIFEST_FIXED} == PQ_MANIFEST_FIXED
    enc = manifest["encryption"]
    assert {k: v for k, v in enc.items() if k not in ("enc", "wrapped_key")} == {
        "kem": "MLKEM768-X25519", "kdf": "HKDF-SHA256", "aead": "AES-256-GCM", "content": "AES-256-GCM-STREAM",
        "chunk_size": 65536, "recipient_key_id": PQ_KEY_IDS[2]}
    import base64
    assert (len(base64.b64decode(enc["enc"])), len(base64.b64decode(enc["wrapped_key"]))) == (1120, 48)
    assert manifest["data"]["size"] == len(ciphertext) == 171 + 16          # one chunk: the 1.0 data + one tag
    assert manifest["data"]["sha256"] == hashlib.sha256(ciphertext).hexdigest()
    assert set(manifest["data"]) == {"member", "encoding", "compression", "sha256", "size"}
    plain = independent_decrypt(manifest, ciphertext, pq_keys()[2])
    assert hashlib.sha256(plain).hexdigest() == "51d19b9b9f832ca5c479952fbe3333276cae7225e94b459dae668362ce1908e2"
    keys = b.DecryptionKeys([pq_keys()[2]])
    assert b.verify_bundle(writer.path, pq_trust(), "fr-hub", keys).event_count == 2


def test_pq_stored_vector():
    """The stored 2.0 vector (written once by write_pq_vector): its bytes are fixed, so its manifest
    is too; the library and the independent decryption both read the fixed events from it."""
    import gzip
    import tarfile

    from intelmq_crossborder.formats import bundle as b
    (path,) = sorted(PQ_VECTOR.glob("*.xbundle"))
    assert path.name == f"de-hub_fr-hub_0000000007_{PQ_BUNDLE_ID}.xbundle"
    with tarfile.open(path) as tar:
        mbytes = tar.extractfile("manifest.json").read()
        ciphertext = tar.extractfile("data.jsonl.gz").read()
    assert hashlib.sha256(mbytes).hexdigest() == (PQ_VECTOR / "manifest.sha256").read_text().split()[0]
    manifest = json.loads(mbytes)
    assert {k: manifest[k] for k in PQ_MANIFEST_FIXED} == PQ_MANIFEST_FIXED
    lines = b"".join(json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                     for e in BUNDLE_EVENTS)
    assert gzip.decompress(independent_decrypt(manifest, ciphertext, pq_keys()[2])) == lines
    with b.open_bundle(path, pq_trust(), "fr-hub", b.DecryptionKeys([pq_keys()[2]])) as opened:
        opened.verify_data()
        assert opened.verified_algorithms == ("ed25519", "ml-dsa-65") and opened.decrypted
        assert [e for _, e in b.iter_events(opened)] == BUNDLE_EVENTS
