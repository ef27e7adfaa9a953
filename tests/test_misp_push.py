"""Unit tests of intelmq_crossborder.formats.misp.push that need no MISP server: the event UUID."""
from intelmq_crossborder.formats.misp import convert as misp, push as misp_push
HUB = {"feed.name": "member-misp", "time.source": "2024-05-01T09:00:00+00:00", "source.ip": "192.0.2.1"}
HIDDEN = {"time.source": "2024-05-01T09:00:00+00:00", "source.ip": "192.0.2.1"}     # feed.name removed


def settings(**kw):
    return misp_push.PushSettings(recipient="community-isac", **kw)


def plain_uuid(event):
    return misp.deterministic_uuid("community-isac", misp.group_key(event, "feed_day"))


def test_uuid_is_the_plain_one_when_nothing_is_hidden():
    assert misp_push.target_event_uuid(HUB, settings()) == plain_uuid(HUB)
    assert misp_push.target_event_uuid(HUB, settings(), shown_event=dict(HUB)) == plain_uuid(HUB)
    assert misp_push.target_event_uuid(HUB, settings(uuid_key=b"k")) == plain_uuid(HUB)


def test_hidden_feed_name_cannot_be_confirmed_from_the_uuid():
    # without a key: the recipient's copy is grouped, so the UUID is the same for any feed name
    no_key = misp_push.target_event_uuid(HUB, settings(), shown_event=HIDDEN)
    assert no_key != plain_uuid(HUB) and no_key == plain_uuid(HIDDEN)
    other_feed = dict(HUB, **{"feed.name": "another-feed"})
    assert misp_push.target_event_uuid(other_feed, settings(), shown_event=HIDDEN) == no_key
    # with the hub's key: hub feeds stay apart, but the UUID is keyed (stable per key)
    keyed = misp_push.target_event_uuid(HUB, settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed not in (plain_uuid(HUB), no_key)
    assert keyed == misp_push.target_event_uuid(dict(HUB), settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed != misp_push.target_event_uuid(other_feed, settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed != misp_push.target_event_uuid(HUB, settings(uuid_key=b"other-secret"), shown_event=HIDDEN)


def test_merge_writes_the_event_under_the_same_uuid_the_bot_looks_up():
    out = dict(HIDDEN, **{"sharing.tlp": "GREEN"})
    hub = dict(HUB, **{"sharing.tlp": "GREEN"})
    for s in (settings(), settings(uuid_key=b"hub-secret")):
        planned = misp_push.merge(None, out, s, key_event=hub)
        assert planned.event.uuid == misp_push.target_event_uuid(hub, s, shown_event=out)


# --- issue 12: the effective TLP and a hidden source, whatever the agreement's decision says -------

import json  # noqa: E402

import pytest  # noqa: E402

from intelmq_crossborder.policy.agreements import agreement_from_dict
from intelmq_crossborder.policy.decide import Decision

from intelmq_crossborder.core import tlp  # noqa: E402
SOURCE = {"feed.url": "https://feeds.secret-originator.example/cti", "feed.name": "Secret Originator Feed",
          "event_description.url": "https://misp.secret-originator.example/events/view/4242",
          "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
          "provenance.originator": "cert-secret-originator"}


def agreement(relation="constituent", max_tlp="AMBER", disclose_source=True):
    return agreement_from_dict({"recipient": "peer-hub", "name": "Peer hub", "kind": "national-hub",
                                "country": "DE", "relation": relation, "max_tlp": max_tlp,
                                "unknown_origin": "allow", "disclose_source": disclose_source})


@pytest.fixture
def trusting_router(monkeypatch):
    """An agreement decision that is wrong (as an upstream bug would make it): it allows everything,
    lowers the label and keeps every field."""
    monkeypatch.setattr(misp_push, "decide", lambda event, agreement, hmac_key=None: Decision(
        True, ["allowed"], dict(event, **{"sharing.tlp": "CLEAR"}), agreement.recipient))


def test_admission_writes_the_effective_level_and_hides_the_source(trusting_router):
    hub = dict(HUB, **SOURCE, **{"sharing.tlp": "GREEN", "extra.misp_tags": [{"name": "tlp:amber"},
                                                                             {"name": "tlp:ex:chr"}]})
    out, field, reason = misp_push.admission(hub, agreement(), None, [0])
    assert (field, reason) == (None, None)
    assert out["sharing.tlp"] == "AMBER" and out["sharing.do_not_disclose_source"] is True
    assert not set(SOURCE) & set(out)
    planned = misp_push.merge(None, out, settings(), key_event=hub)
    written = planned.event.to_json()
    assert not any(value in written for value in SOURCE.values())
    assert {t.name for t in planned.event.tags} >= {"tlp:amber", "tlp:ex:chr"}
    assert planned.event.uuid == misp_push.target_event_uuid(hub, settings(), shown_event=out)


def test_admission_refuses_red_and_amber_strict_outside_the_organisation(trusting_router):
    red = dict(HUB, **{"sharing.tlp": "GREEN", "extra.tags": "osint,tlp:red"})
    assert misp_push.admission(red, agreement("same-organisation", "AMBER+STRICT"), None, [])[1:] == (
        "extra.tags[1]", "TLP:RED is never forwarded automatically")
    strict = dict(HUB, **{"sharing.tlp": "GREEN", "extra.tlp": "amber+strict"})
    out, field, reason = misp_push.admission(strict, agreement(), None, [])
    assert out is None and field == "extra.tlp" and "AMBER+STRICT never leaves the organisation" in reason
    out, field, _ = misp_push.admission(strict, agreement("same-organisation", "AMBER+STRICT"), None, [])
    assert field is None and out["sharing.tlp"] == "AMBER+STRICT"
    # above the agreement's ceiling even though the decision said yes
    amber = dict(HUB, **{"sharing.tlp": "GREEN", "tlp": "AMBER"})
    assert misp_push.admission(amber, agreement("community", "GREEN"), None, [])[1] == "sharing.tlp"


@pytest.mark.parametrize("fields, named", [
    ({"extra.tlp": ["RED"]}, "extra.tlp"),
    ({"extra.misp_tags": [{"name": "tlp\u200b:red"}]}, "extra.misp_tags[0].name"),
    ({"extra.misp_tags": [{"colour": "#cc0033"}]}, "extra.misp_tags[0]"),
    ({"sharing.do_not_disclose_source": "perhaps"}, "sharing.do_not_disclose_source"),
])
def test_admission_refuses_unreadable_labels_naming_the_field(trusting_router, fields, named):
    out, field, reason = misp_push.admission(dict(HUB, **{"sharing.tlp": "GREEN"}, **fields), agreement(), None, [])
    assert out is None and field == named and reason


def test_merge_reads_the_effective_level_and_the_hide_flag_itself():
    # merge() alone (no admission in front): the tlp:red tag counts, the flag hides the source
    event = dict(HUB, **SOURCE, **{"sharing.tlp": "GREEN", "extra.misp_tags": ["tlp:red"],
                                   "sharing.do_not_disclose_source": True})
    planned = misp_push.merge(None, event, settings(event_info="{feed} {key} {incident}", grouping="incident",
                                                     incident_field="misp.event_uuid"))
    written = json.dumps(json.loads(planned.event.to_json()))
    assert not any(value in written for value in SOURCE.values())
    assert {t.name for t in planned.event.attributes[0].tags} >= {"tlp:red", "tlp:ex:chr"}
    with pytest.raises(tlp.LabelError) as err:
        misp_push.merge(None, dict(HUB, **{"extra.tlp": ["RED"]}), settings())
    assert err.value.field == "extra.tlp"
    with pytest.raises(ValueError, match="no TLP label"):
        misp_push.merge(None, dict(HUB), settings())


# --- misp_state: the MISP collector's state file is read as hostile input ---------------------------

@pytest.mark.parametrize("text, says", [
    ('{"timestamp": 1, "timestamp": 2}', "duplicate"),
    ("[" * 5000 + "]" * 5000, "nest"),
    ('["timestamp"]', "must be a json object"),
    ('{"timestamp": true}', "field timestamp"),
    ('{"timestamp": 1, "recent": {"u": "soon"}}', "field recent"),
    ('{"timestamp": 1' + "0" * 100 + "}", "number"),
])
def test_collector_state_refuses_a_bad_file_with_a_message(tmp_path, text, says):
    from intelmq_crossborder.formats.misp.state import CollectorState
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        CollectorState(str(path)).load()
    assert str(path) in str(err.value) and says in str(err.value).lower()
    assert CollectorState(str(tmp_path / "none.json")).load().newest is None
