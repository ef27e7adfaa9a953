"""Unit tests of intelmq_crossborder.core.fingerprint."""
from intelmq_crossborder.core.fingerprint import FINGERPRINT_FIELDS, fingerprint, has_identity, identity

EV = {"classification.type": "scanner", "classification.taxonomy": "information-gathering",
      "source.ip": "192.0.2.1", "source.port": 22, "time.source": "2024-01-01T00:00:00+00:00"}


def test_stable_hex_sha256():
    fp = fingerprint(EV)
    assert len(fp) == 64 and all(c in "0123456789abcdef" for c in fp)
    assert fingerprint(dict(reversed(list(EV.items())))) == fp


def test_hub_specific_fields_do_not_count():
    hub_view = dict(EV, **{"time.observation": "2024-01-02T00:00:00+00:00", "feed.name": "peer feed",
                           "source.geolocation.cc": "AT", "source.asn": 64496, "raw": "eA==",
                           "provenance.hub_path": "at-hub,de-hub", "sharing.tlp": "GREEN",
                           "sharing.agreement": "x", "extra.note": "n"})
    assert fingerprint(hub_view) == fingerprint(EV)


def test_identifying_fields_count():
    assert fingerprint(dict(EV, **{"source.ip": "192.0.2.2"})) != fingerprint(EV)
    assert fingerprint(dict(EV, **{"source.port": 23})) != fingerprint(EV)
    assert fingerprint(dict(EV, **{"malware.name": "mirai"})) != fingerprint(EV)


def test_empty_values_ignored_and_identity():
    assert fingerprint(dict(EV, **{"source.fqdn": ""})) == fingerprint(EV)
    assert set(identity(EV)) <= set(FINGERPRINT_FIELDS)
    assert has_identity(EV) and not has_identity({"feed.name": "x"})


def test_intelmq_event_same_as_dict():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    assert fingerprint(Event(dict(EV), harmonization=merged_harmonization())) == fingerprint(EV)
