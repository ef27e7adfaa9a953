"""TLP 2.0 core: every spelling in both directions, ordering, errors."""
import pytest
from hypothesis import given, strategies as st

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.tlp import Level

L = Level

PLAIN = [
    # value, level, standard
    ("CLEAR", L.CLEAR, tlp.TLP2), ("clear", L.CLEAR, tlp.TLP2), ("TLP:CLEAR", L.CLEAR, tlp.TLP2),
    ("GREEN", L.GREEN, tlp.TLP_ANY), ("TLP:GREEN", L.GREEN, tlp.TLP_ANY), ("Green", L.GREEN, tlp.TLP_ANY),
    ("AMBER", L.AMBER, tlp.TLP_ANY), ("TLP:AMBER", L.AMBER, tlp.TLP_ANY), ("tlp: amber", L.AMBER, tlp.TLP_ANY),
    ("AMBER+STRICT", L.AMBER_STRICT, tlp.TLP2), ("TLP:AMBER+STRICT", L.AMBER_STRICT, tlp.TLP2),
    ("AMBER STRICT", L.AMBER_STRICT, tlp.TLP2), ("amber strict", L.AMBER_STRICT, tlp.TLP2),
    ("TLP:AMBER STRICT", L.AMBER_STRICT, tlp.TLP2), ("Tlp:Amber+Strict", L.AMBER_STRICT, tlp.TLP2),
    ("RED", L.RED, tlp.TLP_ANY), ("TLP:RED", L.RED, tlp.TLP_ANY), ("  red  ", L.RED, tlp.TLP_ANY),
    ("WHITE", L.CLEAR, tlp.TLP1), ("TLP:WHITE", L.CLEAR, tlp.TLP1), ("white", L.CLEAR, tlp.TLP1),
    ("TLP WHITE", L.CLEAR, tlp.TLP1),
]
MISP_TAGS = [
    ("tlp:white", L.CLEAR), ("tlp:clear", L.CLEAR), ("tlp:green", L.GREEN), ("tlp:amber", L.AMBER),
    ("tlp:amber+strict", L.AMBER_STRICT), ("tlp:red", L.RED),
]
STIX = [
    ("marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9", L.CLEAR, tlp.STIX_TLP1),
    ("marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", L.GREEN, tlp.STIX_TLP1),
    ("marking-definition--f88d31f6-486f-44da-b317-01333bde0b82", L.AMBER, tlp.STIX_TLP1),
    ("marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", L.RED, tlp.STIX_TLP1),
    ("marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", L.CLEAR, tlp.STIX_TLP2),
    ("marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", L.GREEN, tlp.STIX_TLP2),
    ("marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", L.AMBER, tlp.STIX_TLP2),
    ("marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", L.AMBER_STRICT, tlp.STIX_TLP2),
    ("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", L.RED, tlp.STIX_TLP2),
]
CSAF20 = [("WHITE", L.CLEAR), ("GREEN", L.GREEN), ("AMBER", L.AMBER), ("RED", L.RED)]
CSAF21 = [("CLEAR", L.CLEAR), ("GREEN", L.GREEN), ("AMBER", L.AMBER), ("AMBER+STRICT", L.AMBER_STRICT), ("RED", L.RED)]
INTELMQ_STOCK = [("WHITE", L.CLEAR), ("GREEN", L.GREEN), ("AMBER", L.AMBER), ("RED", L.RED)]


def test_order():
    assert L.CLEAR < L.GREEN < L.AMBER < L.AMBER_STRICT < L.RED
    assert [lvl.label for lvl in L] == ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]


@pytest.mark.parametrize("value,level,standard", PLAIN)
def test_plain_and_prefixed(value, level, standard):
    parsed = tlp.parse(value)
    assert (parsed.level, parsed.standard, parsed.chatham_house) == (level, standard, False)


@pytest.mark.parametrize("tag,level", MISP_TAGS)
def test_misp_tags_both_ways(tag, level):
    assert tlp.parse(tag) == tlp.ParsedTLP(level, tlp.MISP)
    # out: tlp:white is read as CLEAR but written as the TLP 2.0 tag tlp:clear
    assert tlp.to_misp_tag(level) == ("tlp:clear" if level is L.CLEAR else tag)


def test_chatham_house_is_a_flag_not_a_level():
    parsed = tlp.parse("tlp:ex:chr")
    assert parsed == tlp.ParsedTLP(None, tlp.MISP, chatham_house=True)
    with pytest.raises(tlp.UnknownTLPError):
        tlp.parse_level("tlp:ex:chr")
    assert tlp.parse_tags(["tlp:ex:chr", "tlp:green", "osint:source-type=\"blog-post\""]) == (L.GREEN, True)
    assert tlp.parse_tags(["tlp:ex:chr"]) == (None, True)


@pytest.mark.parametrize("mid,level,standard", STIX)
def test_stix_ids_both_ways(mid, level, standard):
    assert tlp.parse(mid) == tlp.ParsedTLP(level, standard)
    assert tlp.parse(mid.upper()).level == level
    version = "1.0" if standard == tlp.STIX_TLP1 else "2.0"
    assert tlp.to_stix_marking_id(level, version) == mid


def test_stix_tlp1_has_no_amber_strict_so_red():
    assert tlp.to_stix_marking_id(L.AMBER_STRICT, "1.0") == STIX[3][0]


@pytest.mark.parametrize("label,level", CSAF20)
def test_csaf20_both_ways(label, level):
    assert tlp.parse_csaf(label, "2.0") == tlp.ParsedTLP(level, tlp.CSAF20)
    assert tlp.to_csaf_label(level, "2.0") == label


@pytest.mark.parametrize("label,level", CSAF21)
def test_csaf21_both_ways(label, level):
    assert tlp.parse_csaf(label, "2.1") == tlp.ParsedTLP(level, tlp.CSAF21)
    assert tlp.to_csaf_label(level, "2.1") == label


def test_csaf_cross_version_labels_are_reported_with_their_standard():
    assert tlp.parse_csaf("CLEAR", "2.0") == tlp.ParsedTLP(L.CLEAR, tlp.CSAF21)
    assert tlp.parse_csaf("WHITE", "2.1") == tlp.ParsedTLP(L.CLEAR, tlp.CSAF20)
    assert tlp.to_csaf_label(L.AMBER_STRICT, "2.0") == "RED"  # never weaker than the source
    with pytest.raises(tlp.UnknownTLPError, match="document.distribution.tlp.label"):
        tlp.parse_csaf("YELLOW", "2.0")


@pytest.mark.parametrize("value,level", INTELMQ_STOCK)
def test_intelmq_stock_both_ways(value, level):
    assert tlp.parse_level(value) == level
    assert tlp.to_intelmq_stock(level) == value


def test_intelmq_stock_amber_strict_is_red():
    assert tlp.to_intelmq_stock(L.AMBER_STRICT) == "RED"


@pytest.mark.parametrize("bad", ["", " ", "PURPLE", "TLP:", "tlp:ex:foo", "tlp:purple", "AMBER+", "YELLOW",
                                 "marking-definition--00000000-0000-0000-0000-000000000000", None, 3, ["RED"]])
def test_unknown_values_raise_naming_the_value(bad):
    with pytest.raises(tlp.UnknownTLPError) as exc:
        tlp.parse(bad, "file x.json, field y")
    assert repr(bad) in str(exc.value) and "file x.json, field y" in str(exc.value)


def test_most_restrictive():
    assert tlp.most_restrictive(["CLEAR", "tlp:amber", L.GREEN]) == L.AMBER
    assert tlp.most_restrictive(["AMBER", "amber strict", "GREEN"]) == L.AMBER_STRICT
    with pytest.raises(ValueError):
        tlp.most_restrictive([])


def test_every_export_row_parses_back_to_at_least_its_level():
    """A conversion out never weakens: reading the exported label back gives the level or a stricter one."""
    for std, reader in [(tlp.MISP, tlp.parse_level), (tlp.INTELMQ, tlp.parse_level),
                        (tlp.CSAF20, lambda v: tlp.parse_csaf(v, "2.0").level),
                        (tlp.CSAF21, lambda v: tlp.parse_csaf(v, "2.1").level),
                        (tlp.STIX_TLP1, tlp.parse_level), (tlp.STIX_TLP2, tlp.parse_level),
                        (tlp.TLP1, tlp.parse_level), (tlp.TLP2, tlp.parse_level)]:
        for level in L:
            row = [r for r in tlp.SPELLINGS if r.standard in (std, tlp.TLP_ANY if std == tlp.TLP2 else std)
                   and r.level == level and r.export]
            if not row:
                continue
            assert reader(row[0].text) >= level, (std, level)


# --- event_tlp: the one reader of an event's labels ------------------------------------

def test_event_tlp_most_restrictive_of_every_field():
    event = {"tlp": "AMBER", "extra.misp_tags": ["tlp:red", "type:OSINT"], "extra.tlp": "tlp:ex:chr",
             "source.ip": "192.0.2.1"}
    got = tlp.event_tlp(event)
    assert got.level == L.RED and got.hide_source
    assert sorted(got.found) == [("extra.misp_tags[0]", "RED"), ("extra.tlp", "ex:chr"), ("tlp", "AMBER")]
    assert got.why.startswith("TLP:RED from extra.misp_tags[0]") and "tlp AMBER" in got.why


def test_event_tlp_no_label_is_none_never_clear():
    got = tlp.event_tlp({"source.ip": "192.0.2.1", "comment": "This is TLP:RED data, says the text"})
    assert got.level is None and got.label is None and not got.hide_source and got.why == "no TLP label"


@pytest.mark.parametrize("event,level", [
    ({"sharing.tlp": "GREEN", "extra.misp_tags": [{"name": "tlp:red"}]}, L.RED),
    ({"sharing.tlp": "CLEAR", "extra.tags": "osint,tlp:amber"}, L.AMBER),
    ({"sharing.tlp": "GREEN", "extra.csaf_tlp": "AMBER+STRICT"}, L.AMBER_STRICT),
    ({"sharing.tlp": "AMBER", "tlp": "GREEN"}, L.AMBER),
    ({"sharing.tlp": "GREEN", "extra.misp": {"Event": {"Tag": [{"name": "tlp:amber"}]}}}, L.AMBER),
    ({"sharing.tlp": "GREEN", "extra.refs": ["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"]},
     L.RED),
    ({"sharing.tlp": "GREEN", "comment": "TLP:AMBER"}, L.AMBER),
])
def test_event_tlp_sharing_tlp_never_lowers_another_label(event, level):
    assert tlp.event_tlp(event).level == level


@pytest.mark.parametrize("event,level", [
    ({"tlp": "RED", "sharing.tlp": "AMBER+STRICT"}, L.AMBER_STRICT),        # the TLP expert's own output
    ({"tlp": "RED", "extra.tlp": "tlp:amber+strict"}, L.RED),              # only the expert's exact pair
    ({"tlp": "RED", "extra.misp_tags": ["tlp:amber+strict"]}, L.RED),
    ({"tlp": "RED"}, L.RED),
    ({"tlp": "RED", "sharing.tlp": "AMBER"}, L.RED),
    ({"tlp": "RED", "sharing.tlp": "AMBER+STRICT", "extra.misp_tags": "tlp:red"}, L.RED),
])
def test_event_tlp_stock_red_beside_amber_strict(event, level):
    assert tlp.event_tlp(event).level == level


@pytest.mark.parametrize("event,field", [
    # look-alikes: zero-width space, Cyrillic letters, full-width colon and letters
    ({"extra.misp_tags": ["tlp\u200b:red"]}, "extra.misp_tags[0]"),
    ({"extra.tags": "osint,tlp:r\u0435d"}, "extra.tags[1]"),                    # Cyrillic e
    ({"extra.tlp": "\u0422LP:RED"}, "extra.tlp"),                               # Cyrillic T
    ({"sharing.tlp": "GREEN", "extra.note": "TLP\uff1aRED"}, "extra.note"),       # full-width colon
    ({"extra.note": "\uff34\uff2c\uff30:\uff32\uff25\uff24"}, "extra.note"),  # full-width letters
    ({"sharing.tlp": "GREEN", "tlp": "R\u0415D"}, "tlp"),
    # labels in lists or other shapes where a string is expected
    ({"sharing.tlp": ["RED"]}, "sharing.tlp"),
    ({"extra.tlp": {"label": "RED"}}, "extra.tlp"),
    ({"extra.csaf_tlp": 4}, "extra.csaf_tlp"),
    ({"extra.misp_tags": [["tlp:red"]]}, "extra.misp_tags[0]"),
    ({"extra.misp_tags": {"name": "tlp:red"}}, "extra.misp_tags"),
    ({"extra.misp_tags": [{"name": "tlp:green"}, {"colour": "#ff0000"}]}, "extra.misp_tags[1]"),
    ({"extra.misp_tags": [{"name": None}]}, "extra.misp_tags[0]"),
    # unknown labels in a label field or the tlp namespace
    ({"extra.tlp": "PURPLE"}, "extra.tlp"),
    ({"extra.misp_tags": "tlp:purple,osint"}, "extra.misp_tags[0]"),
    # fields whose name says TLP but are not label fields, also nested in extra
    ({"extra.tlp_level": "RED"}, "extra.tlp_level"),
    ({"extra.TLP": "RED"}, "extra.TLP"),
    ({"extra.misp": {"Event": {"tlp": "red"}}}, "extra.misp.Event.tlp"),
    ({"extra.x": [{"y": {"TLP_label": "AMBER"}}]}, "extra.x[0].y.TLP_label"),
    # the source flag must be a boolean
    ({"sharing.do_not_disclose_source": "maybe"}, "sharing.do_not_disclose_source"),
    ({"sharing.do_not_disclose_source": 2}, "sharing.do_not_disclose_source"),
    ({"sharing.do_not_disclose_source": 1.0}, "sharing.do_not_disclose_source"),
    ({"sharing.do_not_disclose_source": ["true"]}, "sharing.do_not_disclose_source"),
])
def test_event_tlp_fails_closed_naming_the_field(event, field):
    with pytest.raises(tlp.LabelError) as info:
        tlp.event_tlp(event)
    assert info.value.field == field
    assert str(info.value).startswith(f"field {field}: ")
    assert isinstance(info.value, tlp.UnknownTLPError)          # callers catching the parser's error see it too


def test_event_tlp_too_deep_is_refused():
    value = "x"
    for _ in range(40):
        value = {"a": value}
    with pytest.raises(tlp.LabelError, match="nested too deeply"):
        tlp.event_tlp({"extra.deep": value})


@pytest.mark.parametrize("flag,hidden", [(True, True), ("true", True), (1, True), ("yes", True), (False, False),
                                         ("false", False), (0, False), (None, False), ("", False)])
def test_event_tlp_hide_flag_booleans(flag, hidden):
    assert tlp.event_tlp({"sharing.do_not_disclose_source": flag, "tlp": "GREEN"}).hide_source is hidden


def test_event_tlp_chatham_house_tag_anywhere_hides_the_source():
    for event in ({"extra.misp_tags": [{"name": "tlp:ex:chr"}]}, {"extra.tags": "tlp:green,tlp:ex:chr"},
                  {"extra.misp": {"Tag": [{"name": "tlp:ex:chr"}]}},
                  {"sharing.do_not_disclose_source": False, "extra.tags": ["tlp:ex:chr"]}):
        assert tlp.event_tlp(event).hide_source, event


def test_event_tlp_reads_an_intelmq_event():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    event = Event({"sharing.tlp": "GREEN", "extra.misp_tags": [{"name": "tlp:amber"}]},
                  harmonization=merged_harmonization())
    assert tlp.event_tlp(event).level == L.AMBER


def test_event_tlp_upper_case_stix_marking_in_another_field_counts():
    # the parser reads upper-case STIX ids (test_stix_ids_both_ways) and extra.tlp does
    assert tlp.event_tlp({"extra.tlp": STIX[3][0].upper()}).level == L.RED
    assert tlp.event_tlp({"sharing.tlp": "GREEN", "extra.refs": [STIX[3][0].upper()]}).level == L.RED


def _spellings_of(level):
    base = level.label
    variants = {base, "TLP:" + base, base.lower(), "tlp:" + base.lower()}
    if level is L.AMBER_STRICT:
        variants |= {"AMBER STRICT", "tlp:amber strict"}
    if level is L.CLEAR:
        variants |= {"WHITE", "tlp:white", "TLP:WHITE"}
    return sorted(variants)


@given(st.lists(st.sampled_from(list(L)), min_size=1, max_size=6), st.data())
def test_property_any_spelling_most_restrictive(levels, data):
    spelled = [data.draw(st.sampled_from(_spellings_of(lvl))) for lvl in levels]
    spelled = [data.draw(st.sampled_from([s, s.upper(), s.title()])) for s in spelled]
    assert tlp.most_restrictive(spelled) == max(levels)


def test_event_tlp_reads_the_other_keys_of_a_tag_object():
    assert tlp.event_tlp({"extra.misp_tags": [{"name": "tlp:amber", "note": "tlp:red"}]}).level == L.RED
    with pytest.raises(tlp.LabelError) as info:
        tlp.event_tlp({"extra.misp_tags": [{"name": "tlp:amber", "tlp": "red"}]})
    assert info.value.field == "extra.misp_tags[0].tlp"
