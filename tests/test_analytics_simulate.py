"""analytics.simulate: reproducible, seasonal, heavy-tailed background with surges the same-indicator rule
cannot see and campaigns that share infrastructure."""
import datetime as dt
import json
import statistics
from collections import Counter, defaultdict

import pytest

from intelmq_crossborder.analytics import evaluate, simulate

SMALL = simulate.Settings(seed=7, weeks=3, countries=5)


@pytest.fixture(scope="module")
def world():
    return simulate.simulate(SMALL)


def test_the_same_seed_gives_the_same_files_byte_for_byte(tmp_path):
    simulate.write(SMALL, tmp_path / "e1", tmp_path / "t1")
    simulate.write(SMALL, tmp_path / "e2", tmp_path / "t2")
    assert (tmp_path / "e1").read_bytes() == (tmp_path / "e2").read_bytes()
    assert (tmp_path / "t1").read_bytes() == (tmp_path / "t2").read_bytes()
    simulate.write(simulate.Settings(seed=8, weeks=3, countries=5), tmp_path / "e3", tmp_path / "t3")
    assert (tmp_path / "e1").read_bytes() != (tmp_path / "e3").read_bytes()


def test_events_and_truth_have_the_formats_evaluate_reads(world, tmp_path):
    events, truth = world
    times = [e["time.source"] for e in events]
    assert times == sorted(times)
    for e in events[:2000]:
        for name in ("time.source", "classification.type", "source.geolocation.cc", "provenance.origin_hub",
                     "sharing.tlp", "source.ip"):
            assert name in e
    simulate.write(SMALL, tmp_path / "e", tmp_path / "t")
    incidents = evaluate.load_truth(tmp_path / "t")
    assert len(incidents) == len(truth) == (SMALL.weeks - SMALL.warmup_weeks) * (SMALL.surges + SMALL.campaigns)
    assert {i.kind for i in incidents} == {"surge", "campaign"}
    warm_end = simulate.EPOCH.timestamp() + SMALL.warmup_weeks * 7 * 86400
    assert all(i.start >= warm_end and i.end > i.start for i in incidents)
    assert {len(i.countries) for i in incidents} & {2, 3} and max(len(i.countries) for i in incidents) >= 4
    assert {t["shape"] for t in truth} == {"abrupt", "gradual"}
    assert len(evaluate.load_events(tmp_path / "e")) == len(events)


def test_background_has_daily_and_weekly_seasonality(world):
    events, _ = world
    by_hour, by_day = Counter(), Counter()
    for e in events:
        if e["classification.type"] in ("phishing", "spam"):       # office-hours types
            when = dt.datetime.fromisoformat(e["time.source"])
            by_hour[when.hour] += 1
            by_day[when.weekday()] += 1
    assert sum(by_hour[h] for h in range(10, 16)) > 2 * sum(by_hour[h] for h in (0, 1, 2, 3, 4, 5))
    assert statistics.mean(by_day[d] for d in range(5)) > 1.3 * statistics.mean(by_day[d] for d in (5, 6))


def test_per_source_volumes_are_heavy_tailed(world):
    events, _ = world
    per_source = Counter((e["source.ip"], e["time.source"][:13]) for e in events)
    volumes = sorted(per_source.values())
    assert statistics.median(volumes) <= 2
    assert volumes[-1] >= 20


def test_without_campaigns_the_same_indicator_rule_sees_nothing():
    """Surges come from fresh sources: the rule (same indicator in 3 hubs/countries) cannot see them."""
    events, truth = simulate.simulate(simulate.Settings(seed=3, weeks=2, countries=5, campaigns=0, surges=4))
    assert len(truth) == 4
    rule = evaluate.RuleDetector()
    assert [a for e in events for a in rule.observe(e)] == []


def _infrastructure(e):
    ip = e["source.ip"]
    keys = {("asn24", (e.get("source.asn"), ip.rsplit(".", 1)[0]))}
    if e.get("source.fqdn"):
        keys.add(("domain", ".".join(e["source.fqdn"].split(".")[-3:])))
    for field, kind in (("malware.hash.sha256", "hash"), ("malware.name", "family"),
                        ("product.vulnerabilities", "cve")):
        if e.get(field):
            keys.add((kind, e[field]))
    return keys


def test_campaign_events_share_the_infrastructure_the_truth_names(world):
    events, truth = world
    campaigns = [t for t in truth if t["kind"] == "campaign"]
    assert campaigns
    for t in campaigns:
        start, end = (dt.datetime.fromisoformat(t[k]).timestamp() for k in ("start", "end"))
        countries_of = defaultdict(set)
        for e in events:
            when = dt.datetime.fromisoformat(e["time.source"]).timestamp()
            if start <= when < end and e["classification.type"] == t["classification.type"] \
                    and e["source.geolocation.cc"] in t["countries"]:
                for key in _infrastructure(e):
                    countries_of[key].add(e["source.geolocation.cc"])
        for kind in t["shared"]:
            spread = max((len(cc) for key, cc in countries_of.items() if key[0] == kind), default=0)
            assert spread >= 2, (t["id"], kind)


def test_labels_and_hidden_sources_vary(world):
    events, _ = world
    labels = Counter(e["sharing.tlp"] for e in events)
    assert set(labels) == {"CLEAR", "GREEN", "AMBER", "RED"}
    assert 0 < sum(1 for e in events if e.get("sharing.do_not_disclose_source")) < len(events) * 0.2


@pytest.mark.parametrize("bad", [dict(weeks=0), dict(weeks=2, warmup_weeks=2), dict(countries=1),
                                 dict(countries=99), dict(surges=-1), dict(volume=0), dict(burst_alpha=1.0),
                                 dict(hidden_fraction=2), dict(weeks=52, volume=20, countries=12)])
def test_bad_settings_are_refused(bad):
    settings = simulate.Settings(**bad)
    assert settings.problems()
    with pytest.raises(ValueError):
        simulate.simulate(settings)


def test_every_line_is_one_json_object(tmp_path):
    simulate.write(simulate.Settings(seed=1, weeks=2, countries=2, volume=0.2), tmp_path / "e", tmp_path / "t")
    for name in ("e", "t"):
        lines = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)
