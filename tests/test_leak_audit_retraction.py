"""Leak audit, retraction phase (issue 16 §4): random events through the outputs, random retractions,
then every artifact is read back byte for byte.

Events and agreements come from the leak audit's generators (tests/leak_audit.py: ``random_event`` with
its ground truth of the distinctive values, ``random_agreement``).  Every event is stamped with its
ids and written by the real library code of each output, as the bots call it:

- the MISP feed of every recipient (``push.admission`` -> ``FeedWriter.push``, holdings recorded);
- the MISP API output of two recipients (``Pusher.push`` through PyMISP to the fake MISP server);
- the hub's data lake (``elastic.build_document`` -> ``BulkIndexer``, the fake Elasticsearch);
- a CSAF output (``AdvisorySpool.add``: spool and provider directory; the copy gets a CVE);
- the contributions store (``contributions.record_event``).

Then about a quarter of the events are retracted at random (withdraw, erase, relabel to a random
level, event or indicator scope) through every output (``apply_retraction``, ``retract.apply``,
``AdvisorySpool.retract``, ``record_retraction``), and the oracle checks, without the system's
label code:

- no file under the outputs' folders (feeds, holdings, provider directory, spool, the SQLite store
  and its WAL, read as raw bytes), no MISP event on the server and no lake document holds an
  erased value (a distinctive value of an erased event that no other event carries).  One
  exception, stated in docs/retraction.md: the contributions store keeps who contributed the
  erased event (``provenance.originator``, else ``feed.provider``, else ``feed.name``: the
  organisation, not the event's data), as the retractions-per-contributor indicator needs it;
  everywhere else those values are erased too;
- no output holds a relabelled event above its entitlement (feed and MISP attribute tags, the lake
  document's label, the CSAF advisory's label), nor below the new label.

``XB_RETRACTION_AUDIT_EVENTS`` (default 160) and ``XB_RETRACTION_AUDIT_SEED`` change the size and seed.
"""
import json
import os
import random
import re
import shutil
import tempfile
import unittest
import uuid
from datetime import datetime, timezone
from pathlib import Path

from intelmq_crossborder.analytics import contributions
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.datalake import elastic, retract as lake_retract
from intelmq_crossborder.datalake.indexer import BulkIndexer
from intelmq_crossborder.formats.csaf.provider import OutputError, ProviderDirectory
from intelmq_crossborder.formats.csaf.spool import AdvisorySpool
from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.formats.misp.holdings import Holdings
from intelmq_crossborder.policy.agreements import AgreementError, agreement_from_dict
from intelmq_crossborder.policy.redact import hidden_event_uuid
from intelmq_crossborder.policy.retraction import new_retraction
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.testing.fake_misp import FakeMISP
from tests.leak_audit import MISP_TLP_TAGS, ORDER, RANK, RELATION_CAP, random_agreement, random_event

EVENTS = int(os.environ.get("XB_RETRACTION_AUDIT_EVENTS", "160"))
SEED = int(os.environ.get("XB_RETRACTION_AUDIT_SEED", "20261201"))
KEY = "audit-key-0123456789abcdefghijklmnopqrstuvwxyz"
HMAC_KEY = b"retraction-audit-pseudonymisation-key"
#: the fields contributions.contributor_of names a contributor by
CONTRIBUTOR_FIELDS = ("provenance.originator", "feed.provider", "feed.name")
CVES = ["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"]
LAKE_CEILING = "AMBER"
CSAF_MAX = "AMBER"


def ceiling_of(doc: dict) -> int:
    """The recipient's entitlement, restated from docs/agreements.md: min(max_tlp, relation cap), never RED."""
    max_tlp = doc["max_tlp"].strip().upper().replace("TLP:", "").replace("WHITE", "CLEAR").replace(" ", "+")
    return min(RANK[max_tlp], RANK[RELATION_CAP[doc["relation"]]], RANK["AMBER+STRICT"])


def tag_rank(tags) -> int:
    ranks = [RANK[MISP_TLP_TAGS[t]] for t in tags if t in MISP_TLP_TAGS]
    return max(ranks) if ranks else -1


class RetractionAudit(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="retraction-audit-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.misp = FakeMISP(key=KEY).__enter__()
        self.addCleanup(self.misp.__exit__)
        self.lake = FakeElasticsearch().start()
        self.addCleanup(self.lake.stop)

    # --- writing -----------------------------------------------------------------------------
    def build(self, rng):
        self.recipients = []
        for i in range(8):
            doc = random_agreement(rng, i)
            doc["enabled"] = True
            try:
                agreement = agreement_from_dict(doc, f"<random {i}>")
            except AgreementError:
                continue
            folder = self.root / "feeds" / agreement.recipient
            feed = misp_push.FeedWriter(folder, "Audit hub")
            settings = misp_push.PushSettings(recipient=agreement.recipient, org_name="Audit hub",
                                              org_uuid=feed.org["uuid"], uuid_key=HMAC_KEY)
            pusher = None
            if len([r for r in self.recipients if r["pusher"]]) < 2:
                connect = misp_push.pymisp_connector(self.misp.url, KEY)
                pusher = misp_push.Pusher(connect, misp_push.PushSettings(recipient=agreement.recipient,
                                                                          uuid_key=HMAC_KEY),
                                          misp_push.RetryingCaller(0, 0.0))
            self.recipients.append({"doc": doc, "agreement": agreement, "feed": feed, "settings": settings,
                                    "feed_holdings": Holdings(self.root / "state" / f"{agreement.recipient}.feed.sqlite"),
                                    "pusher": pusher,
                                    "misp_holdings": Holdings(self.root / "state" / f"{agreement.recipient}.misp.sqlite")})
        self.assertGreaterEqual(len(self.recipients), 3)
        self.csaf = AdvisorySpool(str(self.root / "csaf-spool"), ProviderDirectory(str(self.root / "csaf")),
                                  {"category": "coordinator", "name": "Audit hub", "namespace": "https://hub.example"},
                                  max_level=tlp.Level.from_label(CSAF_MAX), group_by=["product.vulnerabilities"],
                                  fallback_group_by=[])
        self.store = contributions.connect(self.root / "stats" / "contributions.sqlite")
        self.addCleanup(self.store.close)
        self.lake_ids = lake_retract.IdMap(self.root / "state" / "lake-ids.sqlite")
        self.addCleanup(self.lake_ids.close)

    def write(self, rng):
        self.events = []
        recent: list = []
        docs = []
        written = {"feed": 0, "misp": 0, "lake": 0, "csaf": 0}
        for n in range(EVENTS):
            ev, truth = random_event(rng, n, recent)
            ev["provenance.event_uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            ev["provenance.fingerprint"] = fingerprint(ev)
            self.events.append((ev, truth))
            ids = ev["provenance.event_uuid"], ev["provenance.fingerprint"]
            for rec in self.recipients:
                out, _, _ = misp_push.admission(ev, rec["agreement"], HMAC_KEY, [0])
                if out is None:
                    continue
                try:
                    planned = rec["feed"].push(out, ev, rec["settings"])
                    rec["feed_holdings"].record(*ids, str(planned.event.uuid), planned.attribute_uuid)
                    written["feed"] += 1
                    if rec["pusher"] is not None:
                        planned = rec["pusher"].push(out, ev)
                        rec["misp_holdings"].record(*ids, str(planned.event.uuid), planned.attribute_uuid)
                        written["misp"] += 1
                except misp_push.PlanError:
                    continue
            try:
                label = elastic.lake_tlp(ev, tlp.Level.AMBER)
            except tlp.LabelError:
                continue
            if label.level <= tlp.Level.from_label(LAKE_CEILING):
                docs.append(elastic.build_document(ev, label=label, prefix="audit", rotation="none",
                                                   default_retention_days=None, now=datetime.now(timezone.utc)))
                if label.hide_source:                   # as the Elasticsearch output does
                    self.lake_ids.remember(ev, docs[-1])
                written["lake"] += 1
            try:
                self.csaf.add(dict(ev, **{"product.vulnerabilities": rng.choice(CVES)}))
                written["csaf"] += 1
            except OutputError:
                pass
            try:
                contributions.record_event(self.store, ev, arrived_at=datetime.now(timezone.utc))
            except (tlp.LabelError, contributions.FieldTypeError):
                pass
        self.indexer = BulkIndexer(lambda: elastic.make_client([self.lake.url]), Backoff(0.01, 0.02))
        self.assertEqual(self.indexer.send(docs), [])
        self.assertTrue(all(written.values()), written)

    # --- retracting ----------------------------------------------------------------------------
    def choose(self, rng):
        """The random retractions: about a quarter of the events, each action and scope."""
        self.erased, self.relabelled, self.retractions = [], [], []
        done = set()
        for ev, truth in rng.sample(self.events, len(self.events) // 4):
            if ev["provenance.event_uuid"] in done:
                continue
            done.add(ev["provenance.event_uuid"])
            action = rng.choice(["withdraw", "erase", "erase", "relabel"])
            scope = "indicator" if rng.random() < 0.2 else "event"
            kwargs = {}
            if action == "relabel":
                kwargs["new_tlp"] = rng.choice(ORDER[1:])
            r = new_retraction(action, "audit", "at-hub", scope=scope,
                               target_event_uuid=None if scope == "indicator" else ev["provenance.event_uuid"],
                               target_fingerprint=ev["provenance.fingerprint"], **kwargs)
            if action == "erase":
                self.erased.append((ev, truth, r))
            elif action == "relabel":
                self.relabelled.append((ev, truth, r))
            self.retractions.append(r)

    def retract(self):
        for r in self.retractions:
            for rec in self.recipients:
                misp_push.apply_retraction(r, rec["feed_holdings"], rec["agreement"], rec["feed"].retract,
                                           misp_push.ERASE)
                if rec["pusher"] is not None:
                    misp_push.apply_retraction(r, rec["misp_holdings"], rec["agreement"], rec["pusher"].retract)
            lake_retract.apply(self.indexer.client(), r, prefix="audit", ceiling=tlp.Level.from_label(LAKE_CEILING),
                               default=tlp.Level.AMBER, idmap=self.lake_ids)
            self.csaf.retract(r)
            contributions.record_retraction(self.store, r, arrived_at=datetime.now(timezone.utc))

    # --- the oracle ----------------------------------------------------------------------------
    def erased_values(self) -> set:
        """Distinctive values of erased events that no event left standing carries (an indicator-wide
        erase takes every event with that fingerprint)."""
        gone_fps = {r.target_fingerprint for _, _, r in self.erased if r.scope == "indicator"}
        gone_uuids = {ev["provenance.event_uuid"] for ev, _, r in self.erased if r.scope == "event"}
        standing = set()
        for ev, truth in self.events:
            if ev["provenance.event_uuid"] not in gone_uuids and ev["provenance.fingerprint"] not in gone_fps:
                standing.update(str(v) for v in truth["values"].values())
        values = set()
        for _ev, truth, _ in self.erased:
            values.update(str(v) for v in truth["values"].values())
        return {v for v in values - standing if len(v) >= 8}

    def artifacts(self) -> dict:
        """Every place an output wrote to, as text: files (raw bytes), the MISP server's events,
        the lake's documents."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(self.root))] = path.read_bytes().decode("utf-8", "replace")
        out["misp-server"] = json.dumps(self.misp.events)
        out["lake"] = json.dumps(self.lake.all_docs())
        return out

    def contributors(self) -> set:
        """What the contributions store keeps of an event by design: its contributor's name."""
        return {str(ev[name]) for ev, _, _ in self.erased for name in CONTRIBUTOR_FIELDS if ev.get(name)}

    def leaks_of_erased(self, values: set) -> list:
        """(where, value) of every erased value found; a value counts as a whole (10.0.0.1 is not
        found in 10.0.0.10)."""
        kept = self.contributors()
        patterns = {v: re.compile(r"(?<![0-9A-Za-z.])" + re.escape(v) + r"(?![0-9A-Za-z])") for v in values}
        return sorted({(where, v) for where, text in self.artifacts().items() for v, pattern in patterns.items()
                       if v in text and pattern.search(text) and not (where.startswith("stats/contributions.sqlite") and v in kept)})

    def relabel_problems(self) -> list:
        """What the relabelled events' copies break; ``self.relabel_checked``: copies checked."""
        problems = []
        self.relabel_checked = 0
        lake_docs = self.lake.all_docs()
        for ev, _truth, r in self.relabelled:
            new = RANK[r.new_tlp.label]
            uuids = {ev["provenance.event_uuid"], hidden_event_uuid(ev["provenance.event_uuid"])}
            for rec in self.recipients:
                ceiling = ceiling_of(rec["doc"])
                for name, holdings in (("feed", rec["feed_holdings"]), ("misp", rec["misp_holdings"])):
                    for row in holdings.targets(r.scope, r.target_event_uuid, r.target_fingerprint):
                        attrs = self.attributes(rec, name, row.misp_event)
                        for attr in attrs:
                            if attr["uuid"] != row.attribute or attr.get("deleted"):
                                continue
                            rank = tag_rank(t["name"] for t in attr.get("Tag", []))
                            self.relabel_checked += 1
                            if rank > ceiling or rank < new:
                                problems.append((rec["agreement"].recipient, name, row.attribute, ORDER[rank],
                                                 r.new_tlp.label))
            for doc_id, (index, source) in lake_docs.items():
                held = source.get("provenance", {}).get("event_uuid") in uuids or (
                    r.scope == "indicator" and source.get("provenance", {}).get("fingerprint") == r.target_fingerprint)
                if held and index != lake_retract.tombstone_index("audit"):
                    rank = RANK[source["sharing"]["tlp"]]
                    self.relabel_checked += 1
                    if rank > RANK[LAKE_CEILING] or rank < new:
                        problems.append(("lake", doc_id, source["sharing"]["tlp"], r.new_tlp.label))
        for path in (self.root / "csaf").rglob("*.json"):
            label = json.loads(path.read_text())["document"]["distribution"]["tlp"]["label"]
            if RANK[label.replace("WHITE", "CLEAR")] > RANK[CSAF_MAX]:
                problems.append(("csaf", path.name, label))
        return problems

    def attributes(self, rec, name, misp_event) -> list:
        if name == "misp":
            return (self.misp.events.get(misp_event) or {}).get("Attribute", [])
        path = rec["feed"].dir / f"{misp_event}.json"
        return json.loads(path.read_text())["Event"].get("Attribute", []) if path.exists() else []

    def test_no_erased_value_and_no_relabelled_event_above_its_entitlement(self):
        rng = random.Random(SEED)
        self.build(rng)
        self.write(rng)
        self.choose(rng)
        self.assertTrue(self.erased and self.relabelled)
        values = self.erased_values()
        planted = self.leaks_of_erased(values)
        self.assertTrue(planted, "the audit must see erased values in the outputs before the retractions")
        self.retract()
        self.maxDiff = None
        self.assertEqual(self.leaks_of_erased(values), [])
        self.assertEqual(self.relabel_problems(), [])
        self.assertGreater(self.relabel_checked, 0, "no relabelled copy was left to check")


if __name__ == "__main__":
    unittest.main()
