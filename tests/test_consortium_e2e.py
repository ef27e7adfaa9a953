"""End to end: the demo consortium (three national hubs, one CSIRT; separate IntelMQ instances
with real bot processes on Redis dbs 1, 5, 7, 8) on the small data set (sensor feeds, one CSAF
advisory).  Asserts exactly which events arrived where, with which TLP, what was withheld and
why, and the one early warning; then the independent leak and loss checks."""
import collections
import shutil
import tempfile
from pathlib import Path

import pytest

from intelmq_crossborder.demo import consortium
pytestmark = pytest.mark.integration

AT_SCANNER = ("at-hub:scanner:source.ip=203.0.113.50", "GREEN")
AT_PHISHING = ("at-hub:phishing:source.url=http://login.example-bank.test/", "CLEAR")
AT_INFECTED = ("at-hub:infected-system:source.ip=198.51.100.23", "AMBER")
AT_BRUTE = ("at-hub:brute-force:source.ip=192.0.2.77", "AMBER")            # no label: default AMBER
DE_SCANNER = ("de-hub:scanner:source.ip=203.0.113.50", "GREEN")
DE_MALWARE = ("de-hub:malware-distribution:source.url=http://dl.example-malware.test/a.exe", "CLEAR")
FI_DDOS = ("fi-hub:ddos:destination.ip=198.51.100.150", "GREEN")
FI_VULN = ("fi-hub:vulnerable-system:source.ip=192.0.2.33", "CLEAR")
FI_CSAF = [(f"fi-hub:vulnerable-system:cve-2017-5149@{p}", "CLEAR") for p in
           ("inductive models ex1100", "inductive models ex1100 with merlinondemand capability",
            "rf models ex1150")]
WARNING = ("early-warning:source.ip=203.0.113.50", "GREEN")

FI_SHARED = [FI_DDOS, FI_VULN, *FI_CSAF]          # FI's phishing is AMBER+STRICT: nobody outside FI
EXPECTED = {
    # peer hubs: GREEN at most, only the sender's own country's events (no relaying)
    "de-hub": dict([AT_SCANNER, AT_PHISHING, *FI_SHARED]),
    "fi-hub": dict([AT_SCANNER, AT_PHISHING, DE_SCANNER, DE_MALWARE]),
    "at-hub": dict([DE_SCANNER, DE_MALWARE, *FI_SHARED]),
    # the AT CSIRT (constituent of at-hub): AMBER, the peers' events included
    "at-csirt": dict([AT_SCANNER, AT_PHISHING, AT_INFECTED, AT_BRUTE, DE_SCANNER, DE_MALWARE, *FI_SHARED]),
    "soc": dict([AT_SCANNER, AT_PHISHING, AT_INFECTED, AT_BRUTE, DE_SCANNER, DE_MALWARE, *FI_SHARED]),
    # the operator: only its types (no phishing)
    "at-grid-operator": dict([AT_SCANNER, AT_INFECTED, AT_BRUTE, DE_SCANNER, DE_MALWARE, *FI_SHARED]),
    # EU level, from the cross-border hub: its taxonomies; the CSIRTs Network only CLEAR events
    "eu-cyclone": dict([DE_MALWARE, FI_DDOS, FI_VULN, *FI_CSAF, WARNING]),
    "csirts-network": dict([FI_VULN, *FI_CSAF, WARNING]),
    # the partner CTI platform, read back from its TAXII collection: indicators only (no advisories), up to
    # GREEN; STIX carries neither the origin hub ('?') nor the source/destination side of an address
    # (an ipv4-addr pattern reads back as source.ip)
    "partner-cti": {"?:scanner:source.ip=203.0.113.50": "GREEN", "?:ddos:source.ip=198.51.100.150": "GREEN",
                    "?:phishing:source.url=http://login.example-bank.test/": "CLEAR",
                    "?:malware-distribution:source.url=http://dl.example-malware.test/a.exe": "CLEAR"},
}

WITHHELD = {
    "de-hub": {("at-hub", "tlp-above-ceiling"): 2, ("at-hub", "tlp-amber-strict"): 1, ("at-hub", "tlp-red"): 1,
               ("at-hub", "origin-not-allowed"): 5, ("at-hub", "loop, origin-not-allowed"): 2,
               ("fi-hub", "tlp-amber-strict"): 1, ("fi-hub", "origin-not-allowed"): 2,
               ("fi-hub", "loop, origin-not-allowed"): 2},
    "fi-hub": {("at-hub", "tlp-above-ceiling"): 2, ("at-hub", "tlp-amber-strict"): 1, ("at-hub", "tlp-red"): 1,
               ("at-hub", "origin-not-allowed"): 2, ("at-hub", "loop, origin-not-allowed"): 5,
               ("de-hub", "taxonomy-not-allowed, tlp-above-ceiling"): 1, ("de-hub", "origin-not-allowed"): 2,
               ("de-hub", "loop, origin-not-allowed"): 5},
    "at-hub": {("de-hub", "taxonomy-not-allowed, tlp-above-ceiling"): 1, ("de-hub", "origin-not-allowed"): 5,
               ("de-hub", "loop, origin-not-allowed"): 2, ("fi-hub", "tlp-amber-strict"): 1,
               ("fi-hub", "origin-not-allowed"): 2, ("fi-hub", "loop, origin-not-allowed"): 2},
    "at-csirt": {("at-hub", "tlp-amber-strict"): 1, ("at-hub", "tlp-red"): 1},
    "at-grid-operator": {("at-csirt", "type-not-allowed"): 1},
    "eu-cyclone": {("fi-hub", "taxonomy-not-allowed"): 3, ("fi-hub", "taxonomy-not-allowed, tlp-amber-strict"): 1},
    "csirts-network": {("fi-hub", "taxonomy-not-allowed"): 2, ("fi-hub", "tlp-above-ceiling"): 2,
                       ("fi-hub", "taxonomy-not-allowed, tlp-above-ceiling"): 1,
                       ("fi-hub", "taxonomy-not-allowed, tlp-amber-strict"): 1},
    "partner-cti": {("fi-hub", "taxonomy-not-allowed"): 4, ("fi-hub", "tlp-amber-strict"): 1},
}


@pytest.fixture(scope="module")
def result(consortium_dbs):
    # not tmp_path: it lives under a 0700 directory the intelmq user (bots drop to it) cannot enter
    workdir = Path(tempfile.mkdtemp(prefix="intelmq-crossborder-consortium-"))
    workdir.chmod(0o755)
    cons = consortium.Consortium(workdir, consortium.default_members(small=True), dbs=consortium_dbs, timeout=120)
    try:
        yield cons.run()
    finally:
        cons.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def test_exactly_which_events_arrived_where(result):
    got = consortium.received(result)
    assert got == EXPECTED
    # no recipient got an event twice (one copy per event and recipient)
    # (the partner's STIX objects by their own ids: without an origin hub, the AT and DE scanner
    # events read back alike)
    counts = collections.Counter((d.recipient, ev["extra.stix_id"] if d.how == "taxii" else consortium.identity(ev))
                                 for d in result["deliveries"] for ev in d.events)
    assert max(counts.values()) == 1


def test_the_nightly_exchange_went_through_signed_bundles(result):
    pairs = {(d.sender, d.recipient) for d in result["deliveries"] if d.how == "bundle"}
    assert pairs == {("at-hub", "de-hub"), ("at-hub", "fi-hub"), ("de-hub", "at-hub"), ("de-hub", "fi-hub"),
                     ("fi-hub", "at-hub"), ("fi-hub", "de-hub"), ("at-hub", "at-csirt")}
    assert result["quarantined"] == {}
    assert any("6 signed bundle(s) sealed and moved between the hubs" in t for t in result["timeline"])


def test_withheld_and_why(result):
    assert {r: dict(c) for r, c in consortium.withheld(result).items()} == WITHHELD


def test_one_early_warning_without_details(result):
    ews = consortium.warnings(result)
    assert sorted(r for r, _ in ews) == ["csirts-network", "eu-cyclone"]
    for _, ev in ews:
        assert ev["sharing.tlp"] == "GREEN"
        assert ev["extra.contributing_hubs"] == ["at-hub", "de-hub"]
        assert ev["extra.contributing_countries"] == ["AT", "DE"]
        assert ev["provenance.origin_hub"] == "fi-hub"
        assert not any(k.startswith(("feed.", "raw", "destination.")) or k == "protocol.transport" for k in ev
                       if k != "feed.name"), ev
        assert ev["feed.name"] == "Cross-border early warning"


def test_redaction_and_provenance_on_the_way(result):
    by = {(d.sender, d.recipient): d.events for d in result["deliveries"]}
    for (sender, recipient), events in by.items():
        for ev in events:
            if consortium.is_warning(ev):
                continue
            if recipient == "partner-cti":      # STIX objects: their deterministic id instead of provenance
                assert ev["extra.stix_id"].startswith("indicator--"), ev
                continue
            assert ev.get("provenance.event_uuid") and ev.get("provenance.fingerprint"), (sender, recipient, ev)
            if recipient in ("at-hub", "de-hub", "fi-hub"):       # peers: source not disclosed
                assert not any(k.startswith("extra.") or k in ("feed.name", "feed.provider", "feed.code",
                                                                  "feed.url", "source.account", "raw") for k in ev), ev
                assert ev["provenance.hub_path"].split(",")[-1] == sender
            if recipient == "at-grid-operator":
                assert not any(k.startswith("extra.") or k in ("comment", "source.account") for k in ev), ev
    infected = [ev for ev in by[("at-csirt", "soc")] if ev.get("source.ip") == "198.51.100.23"]
    assert infected and infected[0]["source.account"] == "victim@example.test"   # constituent: kept


def test_no_leak_no_loss_no_dump(result):
    assert consortium.leak_check(result) == []
    assert consortium.loss_check(result) == []
    assert all(not per for per in result["dumps"].values()), result["dumps"]
    text = consortium.report(result)
    assert "Leak count: 0" in text and "Lost events: 0" in text and "Early warnings raised: 1" in text
