"""Unit tests of the MISP bots' library (no IntelMQ, no MISP server): formats.misp.push.Pusher (plan
cache, writes, re-plan after a refusal, publication, sharing group), FeedWriter.push, the collector's
paged run (formats.misp.state.collect), the bot parameter helpers, and URLs without a scheme."""
import json
import logging
import os
import stat

import pytest
from pymisp import MISPEvent

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.misp import convert as misp, push as misp_push
from intelmq_crossborder.formats.misp.state import CollectorState, collect

EVENT = {"feed.name": "member-misp", "time.observation": "2024-05-01T10:00:00+00:00",
         "time.source": "2024-05-01T09:00:00+00:00", "source.ip": "192.0.2.1", "sharing.tlp": "GREEN",
         "classification.type": "c2-server", "classification.taxonomy": "malicious-code"}
NOT_FOUND = {"errors": (404, {"name": "Invalid event", "message": "Invalid event"})}


class FakeAPI:
    """The PyMISP methods the Pusher calls, in process: events kept as MISPEvent, calls recorded."""

    def __init__(self):
        self.events, self.calls, self.refuse, self.reject = {}, [], {}, {}

    def _answer(self, name):
        self.calls.append(name)
        if self.refuse.get(name):
            self.refuse[name] -= 1
            return {"errors": (403, {"name": "Event already exists", "message": "Event already exists"})}
        return None

    def get_event(self, uuid, pythonify=False):
        self.calls.append("get_event")
        if uuid not in self.events:
            return NOT_FOUND
        copy = MISPEvent()
        copy.from_dict(**json.loads(self.events[uuid].to_json()))
        return copy

    def add_event(self, event, pythonify=False):
        self.events[str(event.uuid)] = event          # done even when the answer is a refusal (lost answer)
        return self._answer("add_event") or event

    def add_attribute(self, uuid, attribute):
        if self.reject.get("add_attribute"):            # refused and not done
            self.calls.append("add_attribute")
            return {"errors": (403, {"name": "Could not add Attribute", "message": "Could not add Attribute"})}
        self.events[uuid].attributes.append(attribute)
        return self._answer("add_attribute") or attribute

    def restore_attribute(self, uuid):
        """No attribute here is soft-deleted: MISP answers 404 (the Pusher's restore finds nothing)."""
        self.calls.append("restore_attribute")
        return {"errors": (404, {"name": "Invalid attribute", "message": "Invalid attribute"})}

    def update_attribute(self, attribute, attribute_uuid):
        return self._answer("update_attribute") or attribute

    def update_event(self, event, event_id=None, metadata=False):
        return self._answer("update_event") or event

    def publish(self, uuid):
        return self._answer("publish") or {"message": "published"}

    def add_sighting(self, sighting, attribute_uuid):
        return self._answer("add_sighting") or {}

    def get_sharing_group(self, value):
        self.calls.append("get_sharing_group")
        return {"SharingGroup": {"id": "7", "uuid": value}}


def pusher(api, **kw):
    settings = misp_push.PushSettings(recipient="peer-hub", distribution=kw.pop("distribution", 0))
    return misp_push.Pusher(lambda: api, settings, misp_push.RetryingCaller(0, 0.0), **kw)


def ev(ip="192.0.2.1", **fields):
    return dict(EVENT, **{"source.ip": ip}, **fields)


def test_plan_cache_saves_lookups_and_writes_only_what_changed():
    api = FakeAPI()
    p = pusher(api)
    p.push(ev(), ev())
    p.push(ev("192.0.2.2"), ev("192.0.2.2"))
    p.push(ev("192.0.2.2"), ev("192.0.2.2"))             # again: nothing to write
    assert api.calls == ["get_event", "add_event", "add_attribute"]
    assert len(p.cache) == 1


def test_plan_cache_keeps_the_last_cache_size_events():
    api = FakeAPI()
    p = pusher(api, cache_size=1)
    day2 = {"time.observation": "2024-05-02T10:00:00+00:00"}
    for fields in ({}, day2, {}):
        p.push(ev(**fields), ev(**fields))
    assert api.calls.count("get_event") == 3             # the first day's event was evicted by the second's
    assert list(p.cache) == [misp_push.target_event_uuid(ev(), p.settings)]


def test_the_event_uuid_is_computed_once_per_message(monkeypatch):
    calls = []
    real = misp_push.target_event_uuid
    monkeypatch.setattr(misp_push, "target_event_uuid", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    pusher(FakeAPI()).push(ev(), ev())
    assert len(calls) == 1


def test_feed_push_computes_the_event_uuid_once(monkeypatch, tmp_path):
    calls = []
    real = misp_push.target_event_uuid
    monkeypatch.setattr(misp_push, "target_event_uuid", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    feed = misp_push.FeedWriter(tmp_path, "hub")
    planned = feed.push(ev(), ev(), misp_push.PushSettings(recipient="peer-hub", org_name="hub"))
    assert len(calls) == 1 and planned.changed
    assert not feed.push(ev(), ev(), misp_push.PushSettings(recipient="peer-hub", org_name="hub")).changed


def test_feed_files_are_replaced_atomically_and_readable_by_the_web_server(tmp_path):
    feed = misp_push.FeedWriter(tmp_path, "hub")
    planned = feed.push(ev(), ev(), misp_push.PushSettings(recipient="peer-hub", org_name="hub"))
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["manifest.json", "hashes.csv", f"{planned.event.uuid}.json"])   # no temporary left
    for name in names:
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644


def test_a_refused_write_is_planned_again_once():
    api = FakeAPI()
    api.refuse["add_event"] = 1                 # created, but the answer was lost: the retry is refused
    p = pusher(api)
    p.push(ev(), ev())
    assert api.calls == ["get_event", "add_event", "get_event"]     # read again: nothing left to do
    api.reject["add_attribute"] = True
    with pytest.raises(misp_push.PermanentMISPError) as err:
        p.push(ev("192.0.2.9"), ev("192.0.2.9"))
    assert err.value.event_uuid == misp_push.target_event_uuid(ev(), p.settings)
    assert err.value.status == 403
    assert api.calls[-2:] == ["add_attribute", "restore_attribute"]    # not a withdrawn attribute either
    assert p.cache == {}                        # read again next time


def test_an_event_that_cannot_be_planned_names_its_misp_event():
    event = ev()
    del event["source.ip"]
    with pytest.raises(misp_push.PlanError, match="no field of the event maps") as err:
        pusher(FakeAPI()).push(event, event)
    assert err.value.event_uuid == misp_push.target_event_uuid(event, misp_push.PushSettings(recipient="peer-hub"))


def test_sharing_group_resolved_once_on_connection():
    api = FakeAPI()
    p = pusher(api, distribution=4, sharing_group="5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10")
    p.push(ev(), ev())
    p.push(ev("192.0.2.2"), ev("192.0.2.2"))
    assert api.calls.count("get_sharing_group") == 1
    assert p.settings.sharing_group_id == 7
    stored = next(iter(api.events.values()))
    assert (stored.distribution, stored.sharing_group_id) == (4, 7)
    assert pusher(FakeAPI(), distribution=4, sharing_group=" 12 ").api is not None
    odd = FakeAPI()
    odd.get_sharing_group = lambda value: {"SharingGroup": []}
    with pytest.raises(misp_push.PermanentMISPError, match="answer names no sharing group id"):
        pusher(odd, distribution=4, sharing_group="5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10").push(ev(), ev())
    with pytest.raises(ValueError, match="sharing_group .* is required with distribution 4"):
        pusher(FakeAPI(), distribution=4, sharing_group="")


def test_publish_after_a_change_only():
    api = FakeAPI()
    p = pusher(api, publish=True)
    p.push(ev(), ev())
    p.push(ev(), ev())
    assert api.calls.count("publish") == 1


def _stored_with_tag(api, p, name):
    p.push(ev(), ev())
    stored = next(iter(api.events.values()))
    stored.attributes[0].tags = []
    stored.attributes[0].add_tag(name)
    p.cache.clear()


@pytest.mark.parametrize("name", ["tlp\uff1ared", "tlp:r\u0435d", "TLP:\u200bRED", "tlp:purple"])
def test_an_unreadable_tlp_tag_on_the_peer_fails_closed(name):
    # parse_tags skipped a tag that does not start with "tlp:" (a full-width colon): the stored
    # attribute then read as unlabelled and its TLP could be lowered; now the message is refused
    api = FakeAPI()
    p = pusher(api)
    _stored_with_tag(api, p, name)
    with pytest.raises(misp_push.PlanError, match="attribute .* of MISP event"):
        p.push(ev(), ev())
    with pytest.raises(misp_push.PlanError):                 # another attribute of the same event
        p.push(ev("192.0.2.8"), ev("192.0.2.8"))


def test_a_readable_stored_tag_is_tightened_and_tlp_ex_chr_kept():
    api = FakeAPI()
    p = pusher(api)
    _stored_with_tag(api, p, "TLP:GREEN")
    api.events[next(iter(api.events))].attributes[0].add_tag(tlp.CHATHAM_HOUSE_TAG)
    planned = p.push(ev(**{"sharing.tlp": "AMBER"}), ev(**{"sharing.tlp": "AMBER"}))
    attribute = planned.event.attributes[0]
    assert {t.name for t in attribute.tags} == {"tlp:amber", "tlp:ex:chr", 'rsit:malicious-code="c2-server"'}
    assert {t.name for t in planned.event.tags} >= {"tlp:amber"}


# --- the API key: core.secrets -----------------------------------------------------------------

def test_api_key_from_the_environment_and_redacted(monkeypatch, caplog):
    monkeypatch.setenv("H4_TEST_MISP_KEY", "env-Secret-key-0123456789")
    logger = logging.getLogger("h4.misp.test")
    assert misp_push.api_key("https://misp.example", "", "H4_TEST_MISP_KEY", logger) == "env-Secret-key-0123456789"
    assert misp_push.api_key("https://misp.example", "param-Secret-42", "H4_TEST_MISP_KEY", logger) == "param-Secret-42"
    with caplog.at_level(logging.INFO, logger="pymisp"):
        logging.getLogger("pymisp").info("Authorization: %s", "env-Secret-key-0123456789")
    assert "env-Secret-key-0123456789" not in caplog.text and "***" in caplog.text
    with pytest.raises(ValueError, match="No MISP API key"):
        misp_push.api_key("https://misp.example", "", "H4_TEST_UNSET_VARIABLE", logger)
    with pytest.raises(ValueError, match="misp_url is required"):
        misp_push.api_key("", "param-Secret-42", None, logger)


# --- bot parameters: IntelMQ Manager's '' is unset -----------------------------------------------

@pytest.mark.parametrize("value, expected", [("", [0]), (None, [0]), ("  ", [0]), ([], []), ("0, 1", [0, 1]),
                                             ([0, "4"], [0, 4])])
def test_refused_distributions(value, expected):
    assert misp_push.refused_distributions(value) == expected


@pytest.mark.parametrize("value", [[True], ["7"], "zero", [-1]])
def test_refused_distributions_refuses_what_is_no_level(value):
    with pytest.raises(ValueError, match="refuse_distributions"):
        misp_push.refused_distributions(value)


def test_check_parameters_takes_empty_values_as_unset():
    empty = {"grouping": "", "refuse_distributions": "", "extra_tags": "", "publish": "", "cache_size": ""}
    assert misp_push.check_parameters(empty, flags={"publish": False}, numbers={"cache_size": (int, 1)}) == []
    bad = {"grouping": "weekly", "refuse_distributions": [9], "publish": "yes", "cache_size": "0"}
    found = misp_push.check_parameters(bad, flags={"publish": False}, numbers={"cache_size": (int, 1)})
    assert [f[0] for f in found] == ["error"] * 4
    assert misp_push.check_parameters({"cache_size": "many"}, numbers={"cache_size": (int, 1)})[0][1] == \
        "Parameter cache_size: expected an integer, got 'many'."


# --- the collector's run ---------------------------------------------------------------------------

def _pages(*pages):
    seen = []

    def search(query):
        seen.append(query)
        return pages[query["page"] - 1]
    return search, seen


def test_collect_pages_emits_new_events_and_saves_the_state_at_the_end(tmp_path):
    state = CollectorState(str(tmp_path / "s.json"))
    events = [{"Event": {"uuid": f"u{i}", "timestamp": str(100 + i)}} for i in range(3)]
    search, seen = _pages(events[:2], ["junk"] + events[2:], [])
    emitted = []
    done = collect(search, state, emitted.append, page_size=2, tags=["hub:share"], initial_since="7d")
    assert [e["uuid"] for e in emitted] == ["u0", "u1", "u2"]
    assert (done.sent, done.pages, done.malformed, done.since) == (3, 3, 1, "7d")
    assert seen[0]["tags"] == ["hub:share"] and seen[0]["timestamp"] == "7d" and seen[1]["page"] == 2
    assert json.loads((tmp_path / "s.json").read_text())["timestamp"] == 102
    search, seen = _pages([events[2]["Event"]])
    again = collect(search, state, emitted.append, page_size=2)
    assert (again.sent, again.skipped, seen[0]["timestamp"]) == (0, 1, "102")   # the boundary second: skipped


def test_collect_keeps_the_state_when_a_page_fails(tmp_path):
    state = CollectorState(str(tmp_path / "s.json"))
    search, _ = _pages([{"Event": {"uuid": "u0", "timestamp": "5"}}], {"errors": "boom"})
    with pytest.raises(misp_push.PermanentMISPError):
        collect(search, state, lambda event: None, page_size=1)
    assert not (tmp_path / "s.json").exists()


# --- url attributes without a scheme (issue 14) -----------------------------------------------------

@pytest.mark.parametrize("value", ["evil.example/login?id=42", "evil.example", "evil.example:8080/x",
                                   "192.0.2.7/a", "[2001:db8::1]:443/a", "\u0435vil.example/login",
                                   "xn--vil-8cd.example/a?b=c#d"])
def test_url_without_scheme_round_trips(value):
    fields = misp.TYPE_FIELDS["url"](value)
    assert fields == {"source.url": "http://" + value, misp.URL_SCHEME_ADDED_FIELD: True}
    event = dict(EVENT, **fields)
    del event["source.ip"]
    assert misp.indicator(event) == ("url", value, "Network activity")
    planned = misp_push.merge(None, event, misp_push.PushSettings(recipient="peer-hub"))
    assert planned.event.attributes[0].value == value


@pytest.mark.parametrize("value, says", [
    ("evil.example/a b", "white space"), ("evil.example/x\n", "white space"), ("evil .example/x", "white space"),
    ("evil.example/\u200bx", "control"), ("evil\u3002example/x", "not a host"), ("evil.example\uff0flogin", "not a host"),
    ("igfxtray.exe", "file name"), ("Data/dtl.dat", "not a host"), ("107.183.86", "not a host"),
    ("mailto:a@b", "not a port"), ("evil.example:99999/x", "not a port"), ("//evil.example/x", "not a host"),
    ("-evil.example/x", "not a host"), ("[::1/x", "not a host"),
])
def test_url_without_scheme_that_is_no_url_is_refused(value, says):
    with pytest.raises(ValueError, match=f"no scheme.*{says}"):
        misp.TYPE_FIELDS["url"](value)


def test_converter_strips_a_trailing_newline_and_keeps_a_url_with_scheme():
    event = {"uuid": "5b646415-7b48-40d5-86b4-c0070acd0835", "Tag": [{"name": "tlp:green"}],
             "Attribute": [{"type": "url", "value": "evil.example/login\n", "to_ids": True},
                           {"type": "url", "value": "https://ok.example/", "to_ids": True}]}
    rows = list(misp.Converter().convert_event(event))
    assert [(r["source.url"], r.get(misp.URL_SCHEME_ADDED_FIELD)) for r in rows] == [
        ("http://evil.example/login", True), ("https://ok.example/", None)]


def test_the_flag_restores_nothing_but_the_added_scheme():
    # a source.url a later expert changed (not starting with http:// any more) is written as it is,
    # and without the flag the scheme stays
    base = {"sharing.tlp": "GREEN", misp.URL_SCHEME_ADDED_FIELD: True}
    assert misp.indicator(dict(base, **{"source.url": "https://evil.example/x"}))[1] == "https://evil.example/x"
    assert misp.indicator({"source.url": "http://evil.example/x"})[1] == "http://evil.example/x"
    assert misp.indicator(dict(base, **{misp.URL_SCHEME_ADDED_FIELD: "true", "source.url": "http://e.example/"}))[1] \
        == "http://e.example/"
