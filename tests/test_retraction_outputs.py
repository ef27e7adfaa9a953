"""Unit tests (no IntelMQ) of the outputs' side of retractions: the MISP holdings index and
apply_retraction, the MISP feed writer, the lake's query/plan/id map, the CSAF spool and its
withdrawn advisory, the contributions store, the early-warning correction."""
import json
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest

from intelmq_crossborder.analytics import contributions, early_warning as ew
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.datalake import elastic, retract as lake
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.formats.csaf.provider import ProviderDirectory, withdrawn_advisory
from intelmq_crossborder.formats.csaf.spool import ORIGINAL_IDS, AdvisorySpool
from intelmq_crossborder.formats.misp import push
from intelmq_crossborder.formats.misp.holdings import Holdings
from intelmq_crossborder.policy import retraction as policy
from intelmq_crossborder.policy.agreements import agreement_from_dict
from intelmq_crossborder.policy.redact import hidden_event_uuid

AGREEMENT = {"recipient": "peer", "name": "Peer", "kind": "national-hub", "country": "DE",
             "relation": "constituent", "max_tlp": "AMBER", "unknown_origin": "allow", "disclose_source": True}


def ev(ip="192.0.2.1", level="GREEN", **fields):
    out = {"classification.type": "c2-server", "classification.taxonomy": "malicious-code", "source.ip": ip,
           "sharing.tlp": level, "feed.name": "member-feed", "time.observation": "2024-05-01T10:00:00+00:00",
           "provenance.event_uuid": str(uuid.uuid4())}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    out["provenance.fingerprint"] = fingerprint(out)
    return out


def retraction(target, action="withdraw", scope="event", **kwargs):
    return policy.new_retraction(action, "test", "at-hub", scope=scope,
                                 target_event_uuid=None if scope == "indicator" else target["provenance.event_uuid"],
                                 target_fingerprint=target["provenance.fingerprint"], **kwargs)


# --- MISP: holdings and apply_retraction ----------------------------------------------------

class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, misp_event, attributes, way, level, hide):
        self.calls.append((misp_event, sorted(attributes), way, level, hide))
        return len(attributes)


@pytest.fixture
def holdings(tmp_path):
    h = Holdings(tmp_path / "h.sqlite")
    yield h
    h.close()


def test_holdings_keep_ids_only_and_bury_what_was_retracted(holdings):
    a = ev()
    holdings.record(a["provenance.event_uuid"], a["provenance.fingerprint"], "misp-1", "attr-1")
    calls = Recorder()
    done = push.apply_retraction(retraction(a, "erase"), holdings, agreement_from_dict(AGREEMENT), calls)
    assert (done.instruction, done.way, done.held, done.changed) == (policy.REMOVE, push.ERASE, 1, 1)
    assert calls.calls == [("misp-1", ["attr-1"], push.ERASE, None, False)]
    assert holdings.tombstone(a["provenance.event_uuid"], None)[1] == "erase"
    assert holdings.targets("event", a["provenance.event_uuid"], None) == []      # applied: not again
    text = "\n".join(holdings.conn.iterdump())
    assert "192.0.2.1" not in text and "member-feed" not in text


@pytest.mark.parametrize("mode", push.WITHDRAW_MODES)
def test_withdraw_follows_the_mode(holdings, mode):
    a = ev()
    holdings.record(a["provenance.event_uuid"], a["provenance.fingerprint"], "m", "x")
    calls = Recorder()
    push.apply_retraction(retraction(a), holdings, agreement_from_dict(AGREEMENT), calls, mode)
    assert calls.calls[0][2] == mode


def test_relabel_within_and_above_the_ceiling(holdings):
    agreement = agreement_from_dict(AGREEMENT)                     # ceiling AMBER
    a, b = ev("192.0.2.1"), ev("192.0.2.2")
    for e, attr in ((a, "x"), (b, "y")):
        holdings.record(e["provenance.event_uuid"], e["provenance.fingerprint"], "m", attr)
    calls = Recorder()
    assert push.apply_retraction(retraction(a, "relabel", new_tlp="AMBER"), holdings, agreement, calls).way == \
        push.RELABEL
    assert calls.calls[-1][2:] == (push.RELABEL, tlp.Level.AMBER, False)
    assert holdings.tombstone(a["provenance.event_uuid"], None) is None            # relabelled: still held
    assert push.apply_retraction(retraction(b, "relabel", new_tlp="AMBER+STRICT"), holdings, agreement,
                                 calls).way == push.ERASE
    assert push.apply_retraction(retraction(a, "relabel", new_pap="RED"), holdings,
                                 agreement_from_dict(dict(AGREEMENT, max_pap="AMBER")), calls).way == push.ERASE


def test_the_routers_removal_after_a_relabel_hard_deletes(holdings):
    a = ev()
    holdings.record(a["provenance.event_uuid"], a["provenance.fingerprint"], "m", "x")
    removal = retraction(a, "relabel", new_tlp="RED").as_removal("no longer admitted by the agreement (tlp)")
    assert removal.action == "withdraw" and removal.reason.startswith(push.RELABEL_REMOVAL)
    calls = Recorder()
    done = push.apply_retraction(removal, holdings, agreement_from_dict(AGREEMENT), calls, push.TAG)
    assert (done.instruction, done.way) == (policy.REMOVE, push.ERASE)


def test_a_shared_attribute_goes_with_its_last_holder(holdings):
    a, b = ev(), ev()
    for e in (a, b):
        holdings.record(e["provenance.event_uuid"], e["provenance.fingerprint"], "m", "same-attr")
    calls = Recorder()
    agreement = agreement_from_dict(AGREEMENT)
    assert push.apply_retraction(retraction(a), holdings, agreement, calls).shared == 1
    assert calls.calls == []
    assert push.apply_retraction(retraction(b), holdings, agreement, calls).changed == 1


def test_a_failed_apply_leaves_the_holdings_for_the_next_attempt(holdings):
    a = ev()
    holdings.record(a["provenance.event_uuid"], a["provenance.fingerprint"], "m", "x")

    def down(*args):
        raise push.TransientMISPError("MISP down")
    with pytest.raises(push.TransientMISPError):
        push.apply_retraction(retraction(a), holdings, agreement_from_dict(AGREEMENT), down)
    assert len(holdings.targets("event", a["provenance.event_uuid"], None)) == 1
    assert holdings.tombstone(a["provenance.event_uuid"], None) is None


def test_feed_writer_removes_attribute_hash_and_manifest_entry(tmp_path):
    feed = push.FeedWriter(tmp_path / "feed", "Hub")
    settings = push.PushSettings(recipient="peer", org_name="Hub", org_uuid=feed.org["uuid"])
    a, b = ev("192.0.2.1"), ev("192.0.2.2")
    planned = [feed.push(e, e, settings) for e in (a, b)]
    event_uuid = str(planned[0].event.uuid)
    assert feed.retract(event_uuid, {planned[0].attribute_uuid}, push.ERASE) == 1
    stored = json.loads((tmp_path / "feed" / f"{event_uuid}.json").read_text())
    assert [x["value"] for x in stored["Event"]["Attribute"]] == ["192.0.2.2"]
    assert feed.retract(event_uuid, {planned[1].attribute_uuid}, push.DELETE) == 1
    assert not (tmp_path / "feed" / f"{event_uuid}.json").exists()
    assert json.loads((tmp_path / "feed" / "manifest.json").read_text()) == {}
    assert (tmp_path / "feed" / "hashes.csv").read_text() == ""
    assert feed.retract(event_uuid, {planned[1].attribute_uuid}, push.ERASE) == 0   # gone: nothing to do


# --- the lake -------------------------------------------------------------------------------

def lake_doc(e, hide=False):
    label = elastic.LakeTLP(tlp.Level.GREEN, hide)
    return elastic.build_document(e, label=label, prefix="p", rotation="none", default_retention_days=None,
                                  now=datetime.now(timezone.utc))


def hit(doc):
    return {"_index": doc.index, "_id": doc.id, "_source": json.loads(json.dumps(doc.source))}


def test_lake_plan_deletes_relabels_and_keeps_what_is_not_named():
    a, b = ev("192.0.2.1"), ev("192.0.2.2")
    hits = [hit(lake_doc(a)), hit(lake_doc(b))]
    todo = lake.plan(retraction(a, "erase"), hits, ceiling=tlp.Level.AMBER, default=tlp.Level.AMBER)
    assert (todo.deletes, todo.relabels, todo.kept) == ([("p-rkeep", a["provenance.fingerprint"])], [], 1)
    todo = lake.plan(retraction(a, "relabel", new_tlp="AMBER"), hits, ceiling=tlp.Level.AMBER,
                     default=tlp.Level.AMBER)
    (doc,) = todo.relabels
    assert doc.source["sharing"]["tlp"] == "AMBER" and (doc.index, doc.id) == ("p-rkeep", a["provenance.fingerprint"])
    assert doc.source["source"]["ip"] == "192.0.2.1"
    todo = lake.plan(retraction(a, "relabel", new_tlp="RED"), hits, ceiling=tlp.Level.AMBER, default=tlp.Level.AMBER)
    assert len(todo.deletes) == 1 and not todo.relabels


def test_lake_query_names_ids_only_and_the_derived_uuid():
    a = ev()
    query = json.dumps(lake.target_query(retraction(a)))
    assert a["provenance.event_uuid"] in query and hidden_event_uuid(a["provenance.event_uuid"]) in query
    assert "192.0.2.1" not in query
    assert a["provenance.event_uuid"] not in json.dumps(lake.target_query(retraction(a, scope="indicator")))


def test_lake_id_map_finds_a_hidden_copy_with_a_recomputed_fingerprint(tmp_path):
    a = ev(event_description__url="https://misp.originator.example/events/view/7")
    doc = lake_doc(a, hide=True)
    assert doc.source["provenance"]["fingerprint"] != a["provenance.fingerprint"]    # recomputed
    ids = lake.IdMap(tmp_path / "ids.sqlite")
    assert ids.remember(a, doc)
    r = retraction(a, scope="indicator")
    assert lake.plan(r, [hit(doc)], ceiling=tlp.Level.AMBER, default=tlp.Level.AMBER).kept == 1
    todo = lake.plan(r, [hit(doc)], ceiling=tlp.Level.AMBER, default=tlp.Level.AMBER, aliases=ids.stored(r))
    assert len(todo.deletes) == 1
    assert "originator.example" not in "\n".join(ids.conn.iterdump())
    ids.close()


def test_lake_tombstone_holds_what_the_retraction_holds():
    a = ev()
    stone = lake.tombstone(retraction(a, "erase"), "p")
    assert stone.index == "p.retractions" and "192.0.2.1" not in json.dumps(stone.source)
    assert stone.source["retraction"]["target_event_uuid"] == a["provenance.event_uuid"]


# --- CSAF -----------------------------------------------------------------------------------

PUBLISHER = {"category": "coordinator", "name": "Hub", "namespace": "https://hub.example"}


def vuln(cve="CVE-2024-0001", **fields):
    return ev(product__vulnerabilities=cve, product__name="Widget", product__vendor="ACME",
              classification__type="vulnerable-system", classification__taxonomy="vulnerable", **fields)


def test_withdrawn_advisory_is_valid_csaf_2_0_and_keeps_the_history():
    doc = withdrawn_advisory(tracking_id="HUB-X", publisher=PUBLISHER, level=tlp.Level.GREEN, version=3,
                             initial_release_date="2024-01-01T00:00:00Z",
                             history=[{"date": "2024-01-01T00:00:00Z", "number": "1", "summary": "Initial version."},
                                      {"date": "2024-01-02T00:00:00Z", "number": "2", "summary": "Update 2."}],
                             reason="retracted")
    assert csaf.validate(doc)[0] == []
    assert [r["number"] for r in doc["document"]["tracking"]["revision_history"]] == ["1", "2", "3"]
    assert "vulnerabilities" not in doc and doc["document"]["category"] == "csaf_base"


def test_spool_retract_rewrites_the_spool_and_revises_or_withdraws(tmp_path):
    spool = AdvisorySpool(str(tmp_path / "s"), ProviderDirectory(str(tmp_path / "p")), PUBLISHER,
                          max_level=tlp.Level.AMBER, group_by=["product.vulnerabilities"], fallback_group_by=[])
    a, b = vuln(source__ip="192.0.2.10"), vuln(source__ip="192.0.2.11")
    spool.add(a)
    spool.add(b)
    (done,) = spool.retract(retraction(a, "erase"))
    assert (done.removed, done.withdrawn, done.version) == (1, False, 3)
    assert "192.0.2.10" not in (tmp_path / "s" / "hub-cve-2024-0001.jsonl").read_text()
    (done,) = spool.retract(retraction(b))
    assert done.withdrawn and not (tmp_path / "s" / "hub-cve-2024-0001.jsonl").exists()
    (path,) = (tmp_path / "p").rglob("*.json")
    assert json.loads(path.read_text())["document"]["category"] == "csaf_base"
    assert spool.retract(retraction(b)) == []                                  # nothing held any more


def test_spool_keeps_the_original_ids_of_a_hidden_copy_privately(tmp_path):
    spool = AdvisorySpool(str(tmp_path / "s"), ProviderDirectory(str(tmp_path / "p")), PUBLISHER,
                          max_level=tlp.Level.AMBER, group_by=["product.vulnerabilities"], fallback_group_by=[])
    a = vuln(sharing__do_not_disclose_source=True, event_description__url="https://psirt.originator.example/a")
    spool.add(a)
    (line,) = (tmp_path / "s" / "hub-cve-2024-0001.jsonl").read_text().splitlines()
    spooled = json.loads(line)
    assert spooled[ORIGINAL_IDS]["provenance.fingerprint"] == a["provenance.fingerprint"]
    published = "".join(p.read_text() for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert a["provenance.fingerprint"] not in published and ORIGINAL_IDS not in published
    (done,) = spool.retract(retraction(a, "withdraw", scope="indicator"))
    assert done.withdrawn


# --- contributions and early warning -------------------------------------------------------

def test_contributions_record_retraction_erases_values_and_counts(tmp_path):
    conn = contributions.connect(tmp_path / "c.sqlite")
    a = ev("192.0.2.99", provenance__originator="cert-a")
    contributions.record_event(conn, a, arrived_at=datetime(2026, 11, 20, tzinfo=timezone.utc))
    got = contributions.record_retraction(conn, retraction(a, "erase"),
                                          arrived_at=datetime(2026, 11, 21, tzinfo=timezone.utc))
    assert got.holders == {("cert-a", "local"): 1} and got.erased_values == 1
    assert "192.0.2.99" not in "\n".join(conn.iterdump())
    rows = {(c.day, c.contributor): c for c in contributions.contributions(conn)}
    assert rows[("2026-11-21", "cert-a")].retracted == {"erase": 1}
    conn.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"192.0.2.99" not in raw                                       # not in a freed page or the WAL


def test_an_old_store_gets_the_id_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(contributions.SCHEMA.replace(",\n    event_uuid TEXT,\n    fingerprint TEXT", "")
                      .split("CREATE TABLE IF NOT EXISTS retractions")[0])
    old.close()
    conn = contributions.connect(path)
    assert {"event_uuid", "fingerprint"} <= {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    conn.close()


def test_early_warning_correction_carries_no_content():
    a = ev()
    record = {"id": "w-1", "time": "2026-11-20T10:00:00+00:00", "trigger": "spread", "level": "AMBER", "pap": "GREEN"}
    fields = ew.build_correction(record, retraction(a, "erase"), "eu-hub", "BE")
    assert fields["extra.corrects_early_warning"] == "w-1" and fields["sharing.tlp"] == "AMBER"
    assert fields["sharing.pap"] == "GREEN"
    assert "192.0.2.1" not in json.dumps(fields)
    assert ew.event_ids(a) == f"{a['provenance.event_uuid']} fp:{a['provenance.fingerprint']}"


# --- hostile state --------------------------------------------------------------------------

def test_holdings_that_are_not_a_holdings_file_are_named(tmp_path):
    from intelmq_crossborder.formats.misp.holdings import HoldingsError
    bad = tmp_path / "h.sqlite"
    bad.write_bytes(b"not an SQLite file at all" * 100)
    with pytest.raises(HoldingsError, match="h.sqlite: cannot open the holdings index"):
        Holdings(bad)
    with pytest.raises(HoldingsError, match="cannot open"):
        Holdings(tmp_path)                       # a directory


def test_an_unreadable_spool_line_stops_the_retraction_and_names_it(tmp_path):
    from intelmq_crossborder.formats.csaf.provider import OutputError
    spool = AdvisorySpool(str(tmp_path / "s"), ProviderDirectory(str(tmp_path / "p")), PUBLISHER,
                          max_level=tlp.Level.AMBER, group_by=["product.vulnerabilities"], fallback_group_by=[])
    a = vuln()
    spool.add(a)
    path = tmp_path / "s" / "hub-cve-2024-0001.jsonl"
    before = path.read_bytes() + b'{"broken": \n'
    path.write_bytes(before)
    with pytest.raises(OutputError, match=r"hub-cve-2024-0001.jsonl:2"):
        spool.retract(retraction(a, "erase"))
    assert path.read_bytes() == before                               # nothing half-done


def test_a_lake_document_whose_labels_cannot_be_read_is_deleted():
    a = ev()
    doc = hit(lake_doc(a))
    doc["_source"]["extra"] = {"tlp": ["RED"]}                         # a label in a list: unreadable
    todo = lake.plan(retraction(a, "relabel", new_tlp="AMBER"), [doc], ceiling=tlp.Level.AMBER,
                     default=tlp.Level.AMBER)
    assert len(todo.deletes) == 1 and not todo.relabels              # fail closed


def test_a_corrupt_feed_event_file_is_a_value_error(tmp_path):
    feed = push.FeedWriter(tmp_path / "feed", "Hub")
    settings = push.PushSettings(recipient="peer", org_name="Hub", org_uuid=feed.org["uuid"])
    a = ev()
    planned = feed.push(a, a, settings)
    (tmp_path / "feed" / f"{planned.event.uuid}.json").write_text('{"Event": {"Attribute": [')
    with pytest.raises(ValueError):
        feed.retract(str(planned.event.uuid), {planned.attribute_uuid}, push.ERASE)
