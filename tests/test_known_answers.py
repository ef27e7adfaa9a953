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
