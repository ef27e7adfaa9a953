"""Property tests: the MISP parser never loosens TLP or distribution."""
import copy
import json
from pathlib import Path

from hypothesis import given, settings, strategies as st

from intelmq_crossborder.formats.misp import convert as misp

from intelmq_crossborder.core import tlp
FIX = Path(__file__).resolve().parent / "fixtures" / "misp"
BASE = json.loads((FIX / "pymisp" / "sighting_1.json").read_text())["Event"]
TLP_TAGS = ["tlp:clear", "tlp:white", "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red", "tlp:ex:chr",
            "TLP:AMBER", "type:OSINT", 'rsit:malicious-code="c2-server"']
tags = st.lists(st.sampled_from(TLP_TAGS), max_size=4)
dist = st.sampled_from(["0", "1", "2", "3", "4", "5", None])


def level_of(names):
    levels = [tlp.parse(n).level for n in names if n.lower().startswith("tlp:") and n != "tlp:ex:chr"]
    return max(levels) if levels else None


@settings(max_examples=150, deadline=None)
@given(event_tags=tags, attr_tags=tags, event_dist=dist, attr_dist=dist)
def test_never_looser_than_event_or_attribute(event_tags, attr_tags, event_dist, attr_dist):
    event = copy.deepcopy(BASE)
    event["Tag"] = [{"name": t} for t in event_tags]
    event["distribution"] = event_dist
    event["SharingGroup"] = {"id": "7", "uuid": "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10"}
    event["sharing_group_id"] = "7"
    attr = event["Attribute"][0]
    attr["sharing_group_id"] = "7" if attr_dist == "4" else "0"        # its group is named by id only
    attr["Tag"] = [{"name": t} for t in attr_tags]
    attr["distribution"] = attr_dist
    event["Attribute"] = [attr]
    (out,) = list(misp.Converter().convert_event(event))

    expected = level_of(event_tags + attr_tags)
    if expected is None:
        assert "sharing.tlp" not in out                     # no guess
    else:
        assert tlp.Level.from_label(out["sharing.tlp"]) == expected
        assert expected >= (level_of(event_tags) or tlp.Level.CLEAR)   # attribute never loosens the event
    assert out.get("sharing.do_not_disclose_source", False) == ("tlp:ex:chr" in event_tags + attr_tags)

    own = [int(d) for d in (attr_dist, event_dist) if d is not None and d != "5"]
    got = out.get("misp.distribution")
    if not own:
        assert got is None
    elif 0 in own:
        assert got == 0                                     # organisation only stays organisation only
    elif 4 in own:
        assert got == 4 and out["misp.sharing_group_uuid"] == "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10"
    else:
        assert got == min(own)                              # never wider than either level
