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
