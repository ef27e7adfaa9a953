"""Unit tests of the CSAF output's spool (intelmq_crossborder.formats.csaf.spool), without IntelMQ bots."""
import json
import os
import stat
from pathlib import Path

import pytest

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.formats.csaf.provider import OutputError, ProviderDirectory
from intelmq_crossborder.formats.csaf.spool import AdvisorySpool

PUBLISHER = {"category": "coordinator", "name": "Example Hub", "namespace": "https://hub.example.org"}


def vuln(cve="CVE-2024-3094", version="5.6.0", **fields):
    return {"product.vulnerabilities": cve, "product.vendor": "tukaani", "product.name": "xz",
            "product.version": version, "classification.type": "vulnerable-system", "sharing.tlp": "GREEN",
            "raw": "eyJ4IjogMX0=", **fields}


def make(tmp_path, **kwargs):
    kwargs.setdefault("max_level", tlp.Level.AMBER)
    publisher = kwargs.pop("publisher", PUBLISHER)
    return AdvisorySpool(str(tmp_path / "spool"), ProviderDirectory(str(tmp_path / "out")), publisher, **kwargs)


def spooled(spool, tracking_id):
    path = Path(spool.spool_path(tracking_id))
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_event_rebuilds_its_advisory_from_the_whole_spool(tmp_path):
    spool = make(tmp_path, group_by=["product.vulnerabilities"])
    first = spool.add(vuln())
    assert (first.tracking_id, first.version, first.events) == ("HUB-CVE-2024-3094", 1, 1)
    second = spool.add(vuln(version="5.6.1", **{"extra.tlp": "amber"}))
    assert (second.version, second.events) == (2, 2)
    assert Path(second.path).relative_to(tmp_path / "out").parts[::2] == ("amber", "hub-cve-2024-3094.json")
    doc = json.loads(Path(second.path).read_text())
    assert csaf.validate(doc) == ([], 0)
    assert doc["document"]["distribution"]["tlp"]["label"] == "AMBER"     # the most restrictive of the two
    assert doc["document"]["tracking"]["version"] == "2"
    assert [h["number"] for h in doc["document"]["tracking"]["revision_history"]] == ["1", "2"]
    names = [b["product"]["name"] for b in doc["product_tree"]["branches"][0]["branches"][0]["branches"]]
    assert names == ["tukaani xz 5.6.0", "tukaani xz 5.6.1"]
    # the GREEN version of the advisory does not stay behind in the folder of the lower label
    assert not list((tmp_path / "out" / "green").rglob("*.json"))
    assert all("raw" not in e for e in spooled(spool, "HUB-CVE-2024-3094"))


def test_write_every_and_flush(tmp_path):
    spool = make(tmp_path, group_by=["product.vulnerabilities"], write_every=3)
    assert spool.add(vuln()) is None
    assert spool.add(vuln(cve="CVE-2024-0001")) is None
    assert spool.add(vuln(version="5.6.1")) is None
    assert not list((tmp_path / "out").rglob("*.json"))
    written = spool.add(vuln(version="5.6.2"))
    assert (written.tracking_id, written.version, written.events) == ("HUB-CVE-2024-3094", 1, 3)
    flushed = spool.flush()
    assert [(w.tracking_id, w.version, w.events) for w in flushed] == [("HUB-CVE-2024-0001", 1, 1)]
    assert spool.flush() == []                                      # nothing pending any more


def test_a_restart_continues_the_versions_and_keeps_the_events(tmp_path):
    make(tmp_path, group_by=["product.vulnerabilities"]).add(vuln())
    meta = json.loads(Path(make(tmp_path).meta_path("HUB-CVE-2024-3094")).read_text())
    again = make(tmp_path, group_by=["product.vulnerabilities"])
    written = again.add(vuln(version="5.6.1"))
    assert (written.version, written.events) == (2, 2)
    doc = json.loads(Path(written.path).read_text())
    assert doc["document"]["tracking"]["initial_release_date"] == meta["initial_release_date"]
    assert len(doc["document"]["tracking"]["revision_history"]) == 2


def test_grouping_by_source_advisory_then_fallback(tmp_path):
    spool = make(tmp_path)
    assert spool.add(vuln(**{"csaf.tracking_id": "ICSA-24-001"})).tracking_id == "HUB-ICSA-24-001"
    assert spool.add(vuln()).tracking_id == "HUB-CVE-2024-3094"      # no csaf.tracking_id: by CVE
    no_fallback = make(tmp_path, fallback_group_by=[], tracking_prefix="X")
    with pytest.raises(OutputError, match="grouping fields are all empty"):
        no_fallback.add(vuln())


@pytest.mark.parametrize("fields, field, reason", [
    ({"sharing.tlp": "RED"}, "sharing.tlp", "never published"),
    ({"sharing.tlp": "AMBER+STRICT"}, "sharing.tlp", "never leaves the organisation"),
    ({"sharing.tlp": "AMBER"}, "sharing.tlp", "above max_tlp GREEN"),
    ({"sharing.tlp": None}, "sharing.tlp", "no TLP label"),
    ({"product.vulnerabilities": None}, "product.vulnerabilities", "not a vulnerability event"),
])
def test_refused_events_never_enter_the_spool(tmp_path, fields, field, reason):
    spool = make(tmp_path, max_level=tlp.Level.GREEN, group_by=["classification.type"])
    event = {k: v for k, v in {**vuln(), **fields}.items() if v is not None}
    with pytest.raises(OutputError) as err:
        spool.add(event)
    assert err.value.field == field and reason in err.value.reason
    assert not (tmp_path / "spool").exists() or not os.listdir(tmp_path / "spool")
    assert spool.pending == {}


def test_an_event_that_gives_no_valid_document_is_refused_before_the_spool(tmp_path):
    spool = make(tmp_path, publisher=dict(PUBLISHER, category="not-a-category"))
    with pytest.raises(OutputError) as err:
        spool.add(vuln())
    assert err.value.field == "csaf" and "no valid CSAF 2.0 document" in err.value.reason
    assert spooled(spool, "HUB-CVE-2024-3094") == []


def test_a_hidden_source_is_removed_before_grouping(tmp_path):
    spool = make(tmp_path)
    written = spool.add(vuln(**{"csaf.tracking_id": "SECRET-2024-0042", "sharing.do_not_disclose_source": True,
                                "feed.url": "https://feeds.secret.example/csaf"}))
    assert written.tracking_id == "HUB-CVE-2024-3094"               # not the hidden source's tracking id
    kept = spooled(spool, written.tracking_id)
    assert "SECRET-2024-0042" not in json.dumps(kept) and "secret.example" not in json.dumps(kept)
    assert "SECRET-2024-0042" not in Path(written.path).read_text()


def test_an_unreadable_spool_line_is_named(tmp_path):
    spool = make(tmp_path, group_by=["product.vulnerabilities"])
    spool.add(vuln())
    with open(spool.spool_path("HUB-CVE-2024-3094"), "a") as fh:
        fh.write('{"product.vulnerabilities": \n')
    with pytest.raises(OutputError) as err:
        spool.add(vuln(version="5.6.1"))
    assert err.value.field == "csaf.spool" and err.value.value.endswith(".jsonl:2")


def test_published_files_are_world_readable_the_spool_is_not(tmp_path):
    spool = make(tmp_path, group_by=["product.vulnerabilities"])
    written = spool.add(vuln())
    folder = Path(written.path).parents[1]
    for path in (written.path, written.path + ".sha256", written.path + ".sha512",
                 folder / "index.txt", folder / "changes.csv"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    assert stat.S_IMODE(os.stat(spool.meta_path(written.tracking_id)).st_mode) & 0o077 == 0


def test_a_message_handed_over_again_after_a_failed_write_is_spooled_once(tmp_path, monkeypatch):
    spool = make(tmp_path, group_by=["product.vulnerabilities"])
    real_write = spool.directory.write

    def disk_full(document):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool.directory, "write", disk_full)
    with pytest.raises(OSError):
        spool.add(vuln())                          # spooled, then the advisory write failed
    monkeypatch.setattr(spool.directory, "write", real_write)
    written = spool.add(vuln())                    # IntelMQ hands the same message over again
    assert (written.version, written.events) == (1, 1)
    assert len(spooled(spool, "HUB-CVE-2024-3094")) == 1
    # a different event of the same group is still spooled
    assert spool.add(vuln(version="5.6.1")).events == 2
    # and so is a later repetition of the first event (it is not the last line any more)
    assert spool.add(vuln()).events == 3
