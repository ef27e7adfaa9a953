"""analytics.campaign: infrastructure keys, clusters, campaigns, expiry, TLP, state (hand-made series with known answers)."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intelmq_crossborder.analytics import alerts as alerts_mod
from intelmq_crossborder.analytics import campaign as cp
from intelmq_crossborder.analytics.alerts import EventError, StateError
from intelmq_crossborder.core import tlp
from tests import hostile

T0 = 1_790_000_000.0
H = 3600.0
SALT = "s" * 16


def iso(seconds):
    return alerts_mod.iso(seconds)


def ev(country, at=0.0, tlp_label="GREEN", hub=None, ctype="phishing", **fields):
    out = {"time.source": iso(T0 + at), "classification.type": ctype, "source.geolocation.cc": country,
           "provenance.origin_hub": hub or f"hub-{country.lower()}", "sharing.tlp": tlp_label}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


def detector(**params):
    """Three countries or hubs make a campaign here (the default is two): the tests read better."""
    return cp.campaign({"salt": SALT, "warmup": 0, "min_countries": 3, "min_hubs": 3, **params})


def feed(det, events):
    found, ids = [], []
    for e in events:
        alerts, cid = det.assign(e)
        found += alerts
        ids.append(cid)
    return found, ids


# --- keys -------------------------------------------------------------------------------------

class TestKeys:
    def test_network_with_asn_and_ipv6_48(self):
        assert cp.infrastructure_keys({"source.ip": "185.220.101.7", "source.asn": 64500}) == \
            ["net:AS64500 185.220.101.0/24"]
        assert cp.infrastructure_keys({"source.ip": "185.220.101.7", "source.asn": "AS64500"}) == \
            ["net:AS64500 185.220.101.0/24"]
        assert cp.infrastructure_keys({"source.ip": "185.220.101.7"}) == ["net:185.220.101.0/24"]
        assert cp.infrastructure_keys({"source.ip": "2a01:4f8:1:2::5"}) == ["net:2a01:4f8:1::/48"]

    @pytest.mark.parametrize("ip", ["10.1.2.3", "192.168.0.1", "127.0.0.1", "198.51.100.7", "fe80::1", "::1",
                                    "100.64.0.1"])
    def test_addresses_that_are_not_global_never_link(self, ip):
        assert cp.infrastructure_keys({"source.ip": ip, "source.asn": 1}) == []

    def test_registered_domain_by_the_public_suffix_list(self):
        keys = cp.infrastructure_keys({"source.fqdn": "a.b.evil.example.co.uk."})
        assert keys == ["domain:example.co.uk"]
        assert cp.infrastructure_keys({"source.url": "https://login.evil.example.com:8443/x?y"}) == \
            ["domain:example.com"]
        assert cp.infrastructure_keys({"source.fqdn": "alice.github.io"}) == ["domain:alice.github.io"], \
            "a private suffix of the list counts: two github.io users are not one domain"
        assert cp.infrastructure_keys({"source.fqdn": "co.uk"}) == []
        assert cp.infrastructure_keys({"source.fqdn": "localhost"}) == []

    def test_lookalike_domains_are_different_domains(self):
        latin = cp.infrastructure_keys({"source.fqdn": "www.paypal.com"})
        cyrillic = cp.infrastructure_keys({"source.fqdn": "www.p\u0430ypal.com"})
        assert latin == ["domain:paypal.com"]
        assert cyrillic and cyrillic != latin and cyrillic[0].startswith("domain:xn--")

    def test_hash_cve_family(self):
        sha = "AB" * 32
        keys = cp.infrastructure_keys({"malware.hash.sha256": sha, "product.vulnerabilities": "cve-2024-3400;CVE-2021-44228",
                                       "malware.name": "  Mirai   Botnet "})
        assert keys == [f"hash:{sha.lower()}", "cve:CVE-2024-3400", "cve:CVE-2021-44228", "family:mirai botnet"]

    def test_kinds_select_and_order(self):
        event = {"source.ip": "185.220.101.7", "malware.name": "x"}
        assert cp.infrastructure_keys(event, ["family"]) == ["family:x"]
        with pytest.raises(ValueError):
            cp.infrastructure_keys(event, ["asn"])

    @pytest.mark.parametrize("field,value", [
        ("source.ip", "not-an-ip"), ("source.ip", ["185.220.101.7"]), ("source.ip", 3),
        ("source.asn", "ASX"), ("source.asn", True), ("source.asn", 2 ** 40), ("malware.hash.sha256", "abc"),
        ("malware.hash.md5", "z" * 32), ("product.vulnerabilities", {"a": 1}), ("malware.name", ["a"]),
        ("source.fqdn", 5)])
    def test_bad_fields_are_named(self, field, value):
        event = {"source.ip": "185.220.101.7", field: value}
        with pytest.raises(EventError) as info:
            cp.infrastructure_keys(event)
        assert info.value.field == field

    def test_many_keys_are_capped(self):
        cves = ";".join(f"CVE-2024-{1000 + i}" for i in range(100))
        keys = cp.infrastructure_keys({"product.vulnerabilities": cves, "malware.name": "x" * 10000})
        assert len(keys) == cp.MAX_KEYS_PER_EVENT
        assert all(len(k) <= cp.MAX_KEY_CHARS for k in keys)


# --- campaigns --------------------------------------------------------------------------------

def net(i):
    return {"source__ip": f"185.220.101.{i}", "source__asn": 64500}


class TestCampaigns:
    def test_three_countries_on_one_network_are_a_campaign(self):
        det = detector()
        found, ids = feed(det, [ev("DE", 0, **net(1)), ev("FR", H, **net(2)), ev("IT", 2 * H, **net(3)),
                                ev("IT", 3 * H, **net(4))])
        assert ids[:2] == [None, None]
        assert ids[2] and ids[3] == ids[2]
        assert len(found) == 1
        a = found[0]
        assert (a.kind, a.detector, a.classification_type) == ("campaign", "campaign", "phishing")
        assert a.countries == ("DE", "FR", "IT")
        assert a.start == T0 and a.raised == T0 + 2 * H and a.delay == 2 * H
        assert a.hubs == 3 and a.undisclosed == 0 and a.tlp == "GREEN"
        assert a.evidence["campaign_id"] == ids[2]
        assert a.evidence["observed_countries"] == 3 and a.evidence["events"] == 3

    def test_the_start_is_the_first_sighting_even_when_a_contributor_reports_again(self):
        found, _ = feed(detector(), [ev("DE", 0, **net(1)), ev("DE", 3 * H, **net(2)), ev("FR", 4 * H, **net(3)),
                                     ev("IT", 5 * H, **net(4))])
        assert found[0].start == T0 and found[0].delay == 5 * H

    def test_two_countries_are_not(self):
        found, ids = feed(detector(), [ev("DE", 0, **net(1)), ev("FR", H, **net(2)), ev("DE", 2 * H, **net(3))])
        assert found == [] and ids == [None] * 3

    def test_by_default_two_countries_are_a_campaign(self):
        det = cp.campaign({"salt": SALT, "warmup": 0})
        found, _ = feed(det, [ev("DE", 0, **net(1)), ev("DE", H, **net(2))])
        assert found == [], "one country, one hub"
        found, _ = feed(det, [ev("FR", 2 * H, **net(3))])
        assert len(found) == 1 and found[0].countries == ("DE", "FR")

    def test_min_hubs_alone(self):
        events = [ev("DE", i * H, hub=f"hub-{i}", **net(i + 1)) for i in range(3)]
        assert feed(detector(min_countries=0, min_hubs=3), events)[0]
        assert not feed(detector(min_countries=3, min_hubs=0), events)[0]

    @pytest.mark.parametrize("fields", [
        [{"source__fqdn": "a.evil-shop.com"}, {"source__url": "http://b.evil-shop.com/x"}, {"source__fqdn": "evil-shop.com"}],
        [{"malware__hash__sha256": "ab" * 32, "source__url": f"http://host{i}.example/x"} for i in range(3)],
        [{"product__vulnerabilities": "CVE-2026-12345"}] * 3,
        [{"malware__name": "Darkgate-X1"}, {"malware__name": "darkgate-x1"}, {"malware__name": "DARKGATE-X1 "}],
        [{"source__ip": "2a01:4f8:1:2::5"}, {"source__ip": "2a01:4f8:1:ffff::9"}, {"source__ip": "2a01:4f8:1::1"}],
    ], ids=["domain", "hash", "cve", "family", "ipv6"])
    def test_every_key_kind_links(self, fields):
        found, _ = feed(detector(), [ev(cc, i * H, **f) for i, (cc, f) in enumerate(zip(("DE", "FR", "IT"), fields))])
        assert len(found) == 1

    def test_links_are_transitive(self):
        # DE and FR share a domain, FR and IT a hash: one cluster over three countries
        events = [ev("DE", 0, source__fqdn="x.evil-shop.com"),
                  ev("FR", H, source__fqdn="y.evil-shop.com", malware__hash__md5="cd" * 16),
                  ev("IT", 2 * H, malware__hash__md5="cd" * 16)]
        found, _ = feed(detector(), events)
        assert len(found) == 1 and found[0].countries == ("DE", "FR", "IT")
        assert found[0].evidence["keys"] == 2

    def test_links_expire_after_the_window(self):
        det = detector(window=6 * 3600)
        found, ids = feed(det, [ev("DE", 0, **net(1)), ev("FR", 1 * H, **net(2)), ev("IT", 8 * H, **net(3))])
        assert found == [], "DE left the window before IT came"
        found, _ = feed(det, [ev("AT", 9 * H, **net(4)), ev("PL", 10 * H, **net(5))])
        assert len(found) == 1 and found[0].countries == ("AT", "IT", "PL")

    def test_a_late_event_does_not_count(self):
        det = detector(window=6 * 3600)
        feed(det, [ev("DE", 10 * H, **net(1)), ev("FR", 10 * H, **net(2))])
        found, _ = feed(det, [ev("IT", 0, **net(3))])
        assert found == [] and det.counts["late"] == 1

    def test_the_wall_clock_refuses_the_far_future_and_caps_the_near_one(self):
        det = detector(max_ahead=600)
        with pytest.raises(EventError) as info:
            det.assign(ev("DE", 2 * H, **net(1)), now=T0)
        assert info.value.field == "time.source"
        det.assign(ev("DE", 300, **net(1)), now=T0)
        assert det.clock == T0

    def test_the_id_is_stable_through_growth_rebuilds_and_a_restart(self):
        det = detector(window=86400)
        _, ids = feed(det, [ev("DE", 0, **net(1)), ev("FR", H, **net(2)), ev("IT", 2 * H, **net(3))])
        cid = ids[-1]
        _, ids = feed(det, [ev("AT", 3 * H + 6000 * i, **net(10 + i)) for i in range(10)])   # several rebuilds
        assert set(ids) == {cid}
        again = cp.CampaignDetector.from_state(json.loads(json.dumps(det.state())))
        found, ids = feed(again, [ev("PL", 20 * H, **net(50))])
        assert found == [] and ids == [cid], "no second alert, the same id"

    def test_two_campaigns_merging_keep_the_older_id(self):
        det = detector()
        _, a = feed(det, [ev(cc, i * 60, **net(i + 1)) for i, cc in enumerate(("DE", "FR", "IT"))])
        _, b = feed(det, [ev(cc, H + i * 60, source__ip=f"45.33.32.{i + 1}", source__asn=63949)
                          for i, cc in enumerate(("AT", "PL", "ES"))])
        assert a[-1] and b[-1] and a[-1] != b[-1]
        _, bridge = feed(det, [ev("NL", 2 * H, source__ip="45.33.32.99", source__asn=63949,
                                  source__fqdn="x.bridge.com"),
                               ev("NL", 2 * H, source__ip="185.220.101.99", source__asn=64500,
                                  source__fqdn="y.bridge.com")])
        assert bridge[-1] == a[-1]

    def test_background_keys_link_nothing(self):
        det = detector(common_after=2 * 86400, window=86400)
        day = 86400
        # mirai is reported every day for three days: background
        feed(det, [ev("DE", d * day, malware__name="mirai", ctype="infected-system") for d in range(3)])
        found, ids = feed(det, [ev(cc, 3 * day + i, malware__name="mirai", ctype="infected-system")
                                for i, cc in enumerate(("FR", "IT", "AT", "PL"))])
        assert found == [] and ids == [None] * 4
        assert det.counts["common"] >= 4

    def test_warm_up_campaigns_raise_nothing_and_give_no_id(self):
        det = cp.campaign({"salt": SALT, "warmup": 86400, "min_countries": 3, "min_hubs": 3})
        found, ids = feed(det, [ev(cc, i * H, **net(i + 1)) for i, cc in enumerate(("DE", "FR", "IT", "AT"))])
        assert found == [] and ids == [None] * 4 and det.counts["baseline"] == 1
        found, _ = feed(det, [ev(cc, 30 * H + i * H, source__fqdn=f"{i}.new-evil.com")
                              for i, cc in enumerate(("DE", "FR", "IT"))])
        assert len(found) == 1, "after the warm-up a new campaign is raised"

    def test_memory_is_bounded(self):
        det = detector(max_keys=100, window=86400)
        for i in range(2000):
            det.assign(ev("DE", i, source__ip=f"{30 + i // 250}.{i % 250}.1.1", source__asn=1000 + i))
        assert len(det.keys) <= 100
        assert len(det.seen) <= 100 * cp.HISTORY_FACTOR
        assert det.counts["evicted"] > 0

    def test_links_are_bounded_too(self):
        det = detector(max_keys=100, window=86400)
        # 95 keys, every event links 16 of them in another combination: many links among few keys
        for i in range(600):
            cves = ";".join(f"CVE-2026-{1000 + (i * 7 + j * j) % 95}" for j in range(16))
            det.assign(ev("DE", i, product__vulnerabilities=cves))
        assert len(det.keys) <= 100
        assert len(det.edges) <= 100 * cp.EDGE_FACTOR
        assert det.counts["evicted_links"] > 0, "the bound was reached"


class TestTLP:
    def test_events_above_max_tlp_neither_count_nor_link(self):
        det = detector()
        found, ids = feed(det, [ev("DE", 0, "RED", **net(1)), ev("FR", H, "AMBER+STRICT", **net(2)),
                                ev("IT", 2 * H, **net(3)), ev("AT", 3 * H, **net(4))])
        assert found == [] and det.counts["withheld"] == 2

    def test_labels_are_read_by_the_one_reader(self):
        det = detector()
        found, _ = feed(det, [ev("DE", 0, **net(1)), ev("FR", H, **net(2), extra__misp_tags=["tlp:red"]),
                              ev("IT", 2 * H, **net(3))])
        assert found == [], "sharing.tlp GREEN beside a tlp:red tag is RED"
        with pytest.raises(tlp.LabelError) as info:
            det.assign(ev("DE", 0, **net(1), extra__tlp="PURPLE"))
        assert info.value.field == "extra.tlp"

    def test_unlabelled_events_count_as_default_tlp(self):
        events = [ev(cc, i * H, **net(i + 1)) for i, cc in enumerate(("DE", "FR", "IT"))]
        for e in events:
            del e["sharing.tlp"]
        assert feed(detector(), events)[0] == [], "default_tlp RED: not counted"
        found, _ = feed(detector(default_tlp="GREEN"), events)
        assert found and found[0].tlp == "GREEN"

    def test_an_amber_link_makes_the_campaign_amber_and_green_events_get_no_id(self):
        det = detector()
        found, ids = feed(det, [ev("DE", 0, **net(1)), ev("FR", H, "AMBER", **net(2)), ev("IT", 2 * H, **net(3)),
                                ev("AT", 3 * H, "AMBER", **net(4)), ev("PL", 4 * H, "RED", **net(5))])
        assert len(found) == 1 and found[0].tlp == "AMBER"
        assert ids == [None, None, None, ids[3], ids[3]] and ids[3]

    def test_a_green_only_campaign_tags_its_green_events(self):
        _, ids = feed(detector(), [ev(cc, i * H, **net(i + 1)) for i, cc in enumerate(("DE", "FR", "IT"))])
        assert ids[-1]

    def test_hidden_sources_are_counted_not_named(self):
        found, _ = feed(detector(), [ev("DE", 0, **net(1)), ev("FR", H, **net(2), sharing__do_not_disclose_source=True),
                                     ev("IT", 2 * H, **net(3))])
        a = found[0]
        assert a.countries == ("DE", "IT") and a.hubs == 3 and a.undisclosed == 1
        assert a.evidence["observed_countries"] == 3
        assert "hub-fr" not in json.dumps(a.as_dict()) and "185.220" not in json.dumps(a.as_dict())


# --- parameters and state -----------------------------------------------------------------------

class TestParameters:
    def test_defaults_and_empty_values(self):
        assert cp.parameter_problems({}) == []
        assert cp.parameter_problems({n: "" for n in ("window", "min_countries", "link_keys", "max_tlp")}) == []
        assert cp.CampaignSettings.from_parameters({"window": "7200", "link_keys": "net, domain"}).link_keys == \
            ("net", "domain")

    @pytest.mark.parametrize("params,named", [
        ({"window": 10}, "campaign_window"), ({"min_countries": -1}, "campaign_min_countries"),
        ({"min_countries": 0, "min_hubs": 0}, "both 0"), ({"link_keys": "net,asn"}, "campaign_link_keys"),
        ({"link_keys": 5}, "campaign_link_keys"), ({"max_tlp": "RED"}, "max_tlp"),
        ({"default_tlp": "PURPLE"}, "default_tlp"), ({"max_keys": True}, "campaign_max_keys"),
        ({"common_after": "x"}, "campaign_common_after")])
    def test_problems_are_named(self, params, named):
        errors = [t for level, t in cp.parameter_problems(params, prefix="campaign_") if level == "error"]
        assert errors and named in errors[0]
        with pytest.raises(ValueError):
            cp.CampaignSettings.from_parameters(params)

    def test_shared_parameters_keep_their_name(self):
        errors = [t for _, t in cp.parameter_problems({"max_tlp": "PURPLE"}, prefix="campaign_")]
        assert errors and "campaign_max_tlp" not in errors[0] and "max_tlp" in errors[0]


def busy_detector():
    det = detector()
    feed(det, [ev("DE", 0, **net(1)), ev("FR", H, **net(2), sharing__do_not_disclose_source=True),
               ev("IT", 2 * H, **net(3), malware__name="x-1"), ev("IT", 3 * H, source__fqdn="a.evil-shop.com",
                                                                  malware__name="x-1")])
    return det


class TestState:
    def test_round_trip(self):
        det = busy_detector()
        state = json.loads(json.dumps(det.state()))
        again = cp.CampaignDetector.from_state(state)
        assert json.loads(json.dumps(again.state())) == state

    @pytest.mark.parametrize("path,value", [
        (("name",), "surge"), (("version",), 2), (("salt",), "short"), (("settings",), {"window": 1}),
        (("clock",), "now"), (("counts",), {"events": -1}), (("keys",), []),
        (("edges",), [["net:x", "net:y", 1.0]]), (("campaigns",), {"c": {"first": 1.0}}), (("seen",), [["x"]])])
    def test_bad_fields_are_named(self, path, value):
        state = json.loads(json.dumps(busy_detector().state()))
        state[path[0]] = value
        with pytest.raises(StateError) as info:
            cp.CampaignDetector.from_state(state)
        assert info.value.field and info.value.field.startswith(path[0])

    @pytest.mark.fuzz
    @hostile.hostile_settings(60)
    @given(data=st.data())
    def test_hostile_states_are_refused_with_a_state_error_only(self, data):
        state = json.loads(json.dumps(busy_detector().state()))
        mutated = data.draw(hostile.wrong_types(state))
        try:
            loaded = cp.CampaignDetector.from_state(mutated)
        except StateError:
            return
        # what loads works: an event, and its state written again
        loaded.assign(ev("PL", 5 * H, **net(9)))
        json.dumps(loaded.state(), allow_nan=False)
