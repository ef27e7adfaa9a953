"""Round trip: real STIX bundles -> events (formats.stix.parse) -> STIX 2.1 (formats.stix.export, every
profile and kind) -> events again.  Every indicator comes back and no label is ever lower; what the
export must refuse (RED, AMBER+STRICT) is refused, never lost silently; every bundle validates."""
import json
from pathlib import Path

import pytest

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import parse as stix

x = pytest.importorskip("intelmq_crossborder.formats.stix.export")
FIX = Path(__file__).parent / "fixtures" / "stix"
BUNDLES = ["talos-lazarus-magicrat.json", "using-marking-definitions.json", "extra/feeds2stix/ipsum_level_8.json",
           "extra/mvt/eaglemsgspy.json", "extra/unit42/2024-02-21-AsyncRAT.json",
           "extra/oasis-elevator/141-TLP-marking-structures.json", "extra/oasis-slider/examples.json"]
OBSERVABLES = ("url", "fqdn", "ip", "network", "account", "asn")
HASHES = ("malware.hash.sha256", "malware.hash.sha1", "malware.hash.md5")


def observables(event):
    """(what, value) of every observable; the side (source/destination) is not part of it: STIX
    SCOs have none, an exported destination address comes back as an address."""
    found = {(k, str(event[k])) for k in HASHES if k in event}
    for side in ("source", "destination"):
        found |= {(k, str(event[f"{side}.{k}"])) for k in OBSERVABLES if f"{side}.{k}" in event}
    return found


@pytest.mark.parametrize("kind", ["indicator", "observed-data"])
@pytest.mark.parametrize("profile", ["oasis", "opencti", "both"])
@pytest.mark.parametrize("name", BUNDLES)
def test_round_trip_keeps_every_indicator_and_never_lowers_a_label(name, profile, kind):
    events = stix.Converter(default_tlp="GREEN").convert(json.loads((FIX / name).read_text("utf-8")))
    builder = x.BundleBuilder(x.ExportSettings("hub-roundtrip", kind=kind, profile=profile))
    sent = []
    for i, event in enumerate(events):
        out = builder.add(event, f"event {i}")
        level = tlp.event_tlp(event).level
        if level >= tlp.Level.AMBER_STRICT:
            assert out is None, "a RED or AMBER+STRICT event was exported"
            continue
        assert out is not None, builder.refused[-1]
        sent.append(event)
    assert len(sent) + len(builder.refused) == len(events)
    bundle = builder.bundle()
    assert x.validation_errors(bundle) == []
    back = stix.Converter().convert(bundle)              # no default: every label must come from the bundle
    levels = {}
    for event in back:
        level = tlp.event_tlp(event).level
        assert level is not None, f"an event came back without a label: {event}"
        for obs in observables(event):
            levels[obs] = max(levels.get(obs, level), level)
    for event in sent:
        mine = observables(event)
        assert mine & set(levels), f"no observable of {sorted(mine)} came back"
        level = tlp.event_tlp(event).level
        for obs in mine & set(levels):
            assert levels[obs] >= level, (obs, levels[obs], level)
