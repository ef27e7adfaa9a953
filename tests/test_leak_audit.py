"""The standing leak audit (tests/leak_audit.py): 100,000 random events x 24 random agreements
through the router decision, a redaction expert and every output (exchange, CSAF, MISP API, MISP
feed, Elasticsearch, TAXII), the hub's own lake, and the MISP outputs without the router; 0 leaks.
Among the events: sharing.tlp below another label, labels that cannot be read (look-alikes, wrong
shapes), and a source hidden by a tlp:ex:chr tag.  Runs without Redis.

XB_LEAK_EVENTS overrides the number of events (e.g. 1000000 for a long run).
"""
import dataclasses
import json
import os
import sys
import types

import pytest

from tests import leak_audit
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.formats.csaf import provider as csaf_output
from intelmq_crossborder.datalake import elastic
from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.policy import agreements as policy_agreements, redact as policy_redact
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.tlp import Level

EVENTS = int(os.environ.get("XB_LEAK_EVENTS", "100000"))


@pytest.mark.slow
def test_leak_audit_zero_leaks(capsys):
    result = leak_audit.run(EVENTS, 24)
    with capsys.disabled():
        print("\nleak audit:", json.dumps({k: result[k] for k in (
            "events", "agreements", "counts", "leaks", "overblocked", "events_by_true_tlp", "events_by_seed_class",
            "leaks_by_seed_class", "unreadable_label_refusals", "workers", "seconds")}))
    assert result["events"] >= 100_000 or "XB_LEAK_EVENTS" in os.environ
    assert result["agreements"] >= 20
    counts = result["counts"]
    # the audit must exercise every path, or a 0 means nothing
    assert counts["router allowed"] > 1000 and counts["router denied"] > 1000
    for output in ("exchange", "csaf", "misp", "misp_feed", "elasticsearch", "taxii"):
        assert counts[f"{output} written"] > 1000, output
        assert counts[f"{output} guard withheld"] > 100, output
    assert counts["lake indexed"] > 1000 and counts["lake withheld"] > 1000
    # the exchange output is graded on what the receiving hub reads from the signed bundles, the
    # CSAF output (some recipients) on the advisories written to disk
    assert counts["exchange events graded from bundles"] == counts["exchange written"] > 1000
    assert counts["exchange bundles verified"] > 24
    assert counts["csaf events written into documents"] > 1000 and counts["csaf documents graded"] > 100
    assert counts["csaf events graded from documents"] > counts["csaf events written into documents"]
    for output in ("misp", "misp_feed"):    # without the router, their own agreement check decides
        assert counts[f"bypass {output} written"] > 1000 and counts[f"bypass {output} guard withheld"] > 10_000
    assert all(result["events_by_true_tlp"].get(k, 0) > 100 for k in
               ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED", "None", "unknown"))
    # the seed classes are there, every variant of them, and the deliverable ones reach the outputs
    seeds = result["events_by_seed"]
    for place in leak_audit.CONFLICT_PLACES:
        assert seeds.get(f"conflict: {place}", 0) > 300, place
    for variant in {v for v, _, _ in leak_audit.UNREADABLE}:
        assert seeds.get(f"look-alike: {variant}", 0) > 200, variant
    for shape in leak_audit.CHR_SHAPES:
        assert seeds.get(f"hidden source: {shape}", 0) > 300, shape
    assert counts["router allowed, conflict"] > 1000 and counts["router allowed, hidden source"] > 1000
    for path in ("solo exchange", "solo csaf", "solo tlp expert"):     # the seeded events without the router
        assert counts[f"{path} written"] > 1000 and counts[f"{path} withheld"] > 1000, path
    assert result["leaks"] == 0, json.dumps({"leaks_by_seed": result["leaks_by_seed"],
                                             "examples": result["examples"]}, indent=1, default=str)
    # the hub's lake indexes what it may (a label-less event under default_tlp), not only nothing wrong
    assert result["overblocked"] == 0, result["overblocked_by_kind"]
    # an unreadable label is refused as such: the router denies the event as unreadable, the outputs
    # fed without the router dump it naming the field (never a crash, never a silent drop)
    refusals = result["unreadable_label_refusals"]
    assert refusals and all(k.endswith("dumped naming the field") for k in refusals), refusals


@pytest.mark.slow
def test_leak_audit_misp_updates_zero_leaks():
    # The MISP output's events kept on the fake MISP: attributes added to existing events, tags
    # tightened, metadata-only edits; the stored events are checked after every write.
    result = misp_updates()
    counts = result["counts"]
    assert counts["misp events/add"] > 1000 and counts["misp attributes/add"] > 1000
    assert counts["misp events/edit"] > 500 and counts["misp attributes/edit"] > 20
    assert counts["bypass misp written"] > 300
    assert result["leaks"] == 0, json.dumps(result["examples"], indent=1, default=str)


def misp_updates():
    return leak_audit.run(5000, 24, misp_updates=True, bypass_every=5, workers=1, outputs=("misp",), lake=False)


def test_oracle_checks_the_events_kept_on_the_misp(monkeypatch):
    # an output that never sends the event's new tags (metadata edit) when it adds a more
    # restrictive attribute: each request looks right, the event on the peer's MISP does not
    real = misp_push.merge
    monkeypatch.setattr(misp_push, "merge", lambda *args, **kw: dataclasses.replace(real(*args, **kw),
                                                                                     meta_changed=False))
    kinds = misp_updates()["leaks_by_kind"]
    assert any(k.startswith("misp: stored event TLP tag below") for k in kinds), kinds
    assert not any(k.startswith("misp: event") or k.startswith("misp: attribute") for k in kinds), kinds


# --- the oracle is not a rubber stamp: a broken router, redaction or output guard is caught -------

def _replace_reader(monkeypatch, reader):
    """Every module of the hub sees ``reader`` instead of tlp.event_tlp (the one label reader)."""
    real = tlp.event_tlp
    for name, module in list(sys.modules.items()):
        if name.startswith("intelmq_crossborder") and getattr(module, "event_tlp", None) is real:
            monkeypatch.setattr(module, "event_tlp", reader)
    return real


def _module_reader(monkeypatch, module, reader):
    """Break one module only: it sees a tlp module whose event_tlp is ``reader``."""
    broken = types.SimpleNamespace(**{name: getattr(tlp, name) for name in dir(tlp) if not name.startswith("__")})
    broken.event_tlp = reader
    monkeypatch.setattr(module, "tlp", broken)


def trusting_reader(event, real=tlp.event_tlp):
    """The bug issue 12 fixes: a readable sharing.tlp is taken as the label, whatever else the
    event carries (the other labels are read only when it has none)."""
    label = event.get("sharing.tlp")
    if isinstance(label, str):
        try:
            level = tlp.parse_level(label)
        except ValueError:
            pass
        else:
            return tlp.EventTLP(level, event.get(tlp.HIDE_SOURCE_FIELD) is True, (("sharing.tlp", level.label),))
    return real(event)


def test_oracle_catches_a_reader_that_trusts_sharing_tlp(monkeypatch):
    _replace_reader(monkeypatch, trusting_reader)
    result = audit(outputs=("exchange", "csaf"), lake=True)
    by_class = result["leaks_by_seed_class"]
    assert by_class["conflict"] > 0 and by_class["look-alike"] > 0, by_class
    kinds = result["leaks_by_kind"]
    assert any(k.startswith(("exchange: TLP:RED", "csaf: TLP:RED")) for k in kinds), kinds
    assert "lake: unreadable TLP label indexed" in kinds, kinds
    assert "solo exchange: unreadable TLP label written" in kinds, kinds     # the output without the router
    assert "solo tlp expert: unreadable TLP label forwarded" in kinds, kinds
    assert any(k.startswith("solo tlp expert: sharing.tlp") for k in kinds), kinds
    seeds = result["leaks_by_seed"]
    assert any(s.startswith("conflict: STIX id") for s in seeds) and \
        any(s.startswith("look-alike: Cyrillic") for s in seeds), sorted(seeds)


def test_oracle_catches_a_source_hidden_only_by_the_flag(monkeypatch):
    # tlp:ex:chr in extra.tags ignored: the originator's URLs reach the recipients
    real = _replace_reader(monkeypatch, lambda event: dataclasses.replace(
        real(event), hide_source=event.get(tlp.HIDE_SOURCE_FIELD) is True))
    result = audit(outputs=("exchange", "csaf"))
    seeds = result["leaks_by_seed"]
    hidden = [kinds for seed, kinds in seeds.items() if seed.startswith("hidden source:")]
    assert any("exchange: feed.url in clear" in kinds for kinds in hidden), seeds
    assert any("exchange: event_description.url in clear" in kinds for kinds in hidden), seeds
    assert any("solo exchange: feed.url in clear" in kinds for kinds in hidden), seeds
    assert any("solo tlp expert: hidden source not flagged" in kinds for kinds in hidden), seeds


def audit(events=3000, outputs=("exchange", "csaf"), lake=False, **kw):
    """A short audit of only the outputs a test breaks (the events are the same)."""
    return leak_audit.run(events, 24, workers=1, outputs=outputs, lake=lake, **kw)


def test_oracle_catches_a_router_that_ignores_the_ceiling(monkeypatch):
    # break both places the router takes a ceiling from: tlp_ceiling() and the
    # ceiling an Agreement caches when it is loaded
    monkeypatch.setattr(policy_agreements, "tlp_ceiling", lambda agreement: Level.AMBER_STRICT)
    load = policy_agreements.agreement_from_dict
    monkeypatch.setattr(policy_agreements, "agreement_from_dict", lambda *a, **kw: dataclasses.replace(
        load(*a, **kw), _ceiling=Level.AMBER_STRICT))
    result = audit()
    assert result["leaks"] > 0
    assert any("above the relation cap" in k or "above max_tlp" in k for k in result["leaks_by_kind"])


def test_oracle_catches_a_redaction_that_removes_nothing(monkeypatch):
    real = policy_redact.redact
    monkeypatch.setattr(policy_redact, "redact", lambda event, **kw: (dict(event), [], []))
    monkeypatch.setattr(policy_agreements.Agreement, "_remove", policy_redact.FieldSelector(), raising=False)
    result = audit()
    assert real is not policy_redact.redact
    assert any("in clear" in k for k in result["leaks_by_kind"]), result["leaks_by_kind"]


def test_oracle_catches_an_output_guard_that_lets_everything_through(monkeypatch):
    from intelmq_crossborder.exchange import outgoing      # the exchange output's guard (bundled_copy)
    _module_reader(monkeypatch, outgoing, lambda flat: tlp.EventTLP(Level.CLEAR, False))
    result = audit(outputs=("exchange",))
    assert any(k.startswith("exchange: TLP") for k in result["leaks_by_kind"]), result["leaks_by_kind"]


def _without_admission(monkeypatch, module):
    """Break one MISP output's guard only: its module sees an admission() that lets everything in."""
    broken = types.SimpleNamespace(**{name: getattr(misp_push, name) for name in dir(misp_push)
                                      if not name.startswith("__")})
    broken.admission = lambda flat, agreement, key, refused: (dict(flat), None, None)
    monkeypatch.setattr(module, "misp_push", broken)


def test_oracle_catches_a_misp_output_without_its_agreement_check(monkeypatch):
    from intelmq_crossborder.bots.outputs.misp import output
    _without_admission(monkeypatch, output)
    kinds = audit(1000, outputs=("misp", "misp_feed"), bypass_every=2)["leaks_by_kind"]
    assert any(k.startswith("misp: source MISP distribution") for k in kinds), kinds
    assert any(k.startswith("bypass misp: TLP:RED") for k in kinds), kinds
    assert any(k.startswith("bypass misp:") and k.endswith("in clear") for k in kinds), kinds
    assert not any(k.startswith(("misp_feed", "bypass misp_feed")) for k in kinds), kinds   # only this output


def test_oracle_catches_a_misp_feed_without_its_agreement_check(monkeypatch):
    from intelmq_crossborder.bots.outputs.misp_feed import output
    _without_admission(monkeypatch, output)
    kinds = audit(1000, outputs=("misp", "misp_feed"), bypass_every=2)["leaks_by_kind"]
    assert any(k.startswith("misp_feed: source MISP distribution") for k in kinds), kinds
    assert any(k.startswith("bypass misp_feed: TLP:RED") for k in kinds), kinds
    assert not any(k.startswith(("misp:", "bypass misp:")) for k in kinds), kinds


def test_oracle_reads_the_misp_tags(monkeypatch):
    real = tlp.to_misp_tag
    monkeypatch.setattr(misp_push.tlp, "to_misp_tag", lambda level: real(Level(max(0, level - 1))))
    kinds = audit(1000, outputs=("misp", "misp_feed"))["leaks_by_kind"]
    for output in ("misp", "misp_feed"):
        assert any(k.startswith(f"{output}: attribute TLP tag below") for k in kinds), kinds
        assert any(k.startswith(f"{output}: event TLP tag below") for k in kinds), kinds
    assert any(k.startswith("misp_feed: manifest entry TLP tag below") for k in kinds), kinds


def test_oracle_reads_every_value_of_the_misp_json(monkeypatch):
    # the MISP outputs write the hub's copy, not the agreement's (as the event title did with
    # {key} until the audit found it): hidden values reach the MISP JSON when no router is in front
    real = misp_push.merge
    monkeypatch.setattr(misp_push, "merge", lambda current, event, settings, key_event=None, event_uuid=None:
                        real(current, key_event or event, settings, key_event, event_uuid))
    kinds = audit(1000, outputs=("misp", "misp_feed"), bypass_every=2)["leaks_by_kind"]
    for output in ("misp", "misp_feed"):
        assert f"bypass {output}: feed.name in clear" in kinds, kinds
        assert any(k.startswith(f"bypass {output}: source.") and k.endswith("in clear") for k in kinds), kinds


def test_oracle_catches_a_lake_that_reads_only_sharing_tlp(monkeypatch):
    # the Elasticsearch output as it was before the audit: a label outside sharing.tlp was ignored
    _module_reader(monkeypatch, elastic, trusting_reader)
    kinds = audit(outputs=(), lake=True)["leaks_by_kind"]
    assert any(k.startswith("lake: document label") for k in kinds), kinds
    assert "lake: unreadable TLP label indexed" in kinds, kinds


def test_oracle_catches_a_lake_without_its_ceiling(monkeypatch):
    monkeypatch.setattr(elastic, "lake_tlp", lambda flat, default: elastic.LakeTLP(Level.CLEAR, True))
    kinds = audit(outputs=("elasticsearch",), lake=True)["leaks_by_kind"]
    assert any(k.startswith("lake: TLP:") and "indexed above the ceiling" in k for k in kinds), kinds
    assert any(k.startswith("elasticsearch: TLP:") and "above the output's max_tlp" in k for k in kinds), kinds


# --- ... nor on the artifacts: the signed bundles and the CSAF advisories -----------------------

def test_oracle_reads_the_bundles(monkeypatch):
    # a bundle writer that lowers every label: the copies the exchange output spools are right,
    # what the receiving hub reads is not
    real = bundle.BundleWriter.write_line

    def lowered(self, line):
        event = json.loads(line)
        event["sharing.tlp"] = "CLEAR"
        real(self, json.dumps(event).encode())
    monkeypatch.setattr(bundle.BundleWriter, "write_line", lowered)
    result = audit(outputs=("exchange",))
    kinds = result["leaks_by_kind"]
    assert any(k.startswith("exchange: label downgraded") for k in kinds), kinds
    assert result["counts"]["exchange events graded from bundles"] > 1000


def test_oracle_reads_the_bundle_manifest_and_count(monkeypatch):
    # a manifest that says more than the format does, and a writer that loses every 50th event
    real_dict, real_line = bundle.Manifest.to_dict, bundle.BundleWriter.write_line
    monkeypatch.setattr(bundle.Manifest, "to_dict", lambda self: dict(real_dict(self), note="x"))

    def lossy(self, line):
        if self.count == 49 and not self.__dict__.get("_dropped"):
            self._dropped = True            # lost: neither written nor counted
            return
        real_line(self, line)
    monkeypatch.setattr(bundle.BundleWriter, "write_line", lossy)
    kinds = audit(1000, outputs=("exchange",))["leaks_by_kind"]
    assert "exchange: manifest fields ['note']" in kinds, kinds
    assert any(k.startswith("exchange: bundle holds") for k in kinds), kinds


def test_oracle_catches_a_bundle_that_does_not_verify(monkeypatch):
    # a writer whose manifest states a hash other than the data's
    real = bundle.BundleWriter.close

    def close(self, *args, **kw):
        self._hasher.sha256.update(b"x")
        return real(self, *args, **kw)
    monkeypatch.setattr(bundle.BundleWriter, "close", close)
    kinds = audit(1000, outputs=("exchange",))["leaks_by_kind"]
    assert any(k.startswith("exchange: bundle does not verify") for k in kinds), kinds


def test_oracle_reads_the_csaf_document_label(monkeypatch):
    # the document's TLP one level low (AMBER+STRICT as AMBER): each copy is right, the advisory is not
    real = tlp.to_csaf_label
    monkeypatch.setattr(csaf_output.tlp, "to_csaf_label",
                        lambda level, version="2.0": real(Level(max(0, min(level, Level.AMBER_STRICT) - 1)), version))
    result = audit(outputs=("csaf",))
    kinds = result["leaks_by_kind"]
    assert any(k.startswith("csaf: document TLP label") and "below TLP:" in k for k in kinds), kinds
    assert not any(k.startswith("csaf: label downgraded") for k in kinds), kinds       # the copies are fine
    assert result["counts"]["csaf events written into documents"] > 100


def test_oracle_catches_a_csaf_advisory_left_in_a_lower_tlp_folder(monkeypatch):
    # an advisory whose TLP rose stays in the folder of its old label too (10,000 events: a recipient
    # rewriting every 2 events sees a group's level rise)
    monkeypatch.setattr(csaf_output.ProviderDirectory, "_remove_other_tlp_copies", lambda self, label, rel: None)
    kinds = audit(10_000, outputs=("csaf",))["leaks_by_kind"]
    assert any(k.startswith("csaf: document published in") and "TLP folders" in k for k in kinds), kinds


def test_oracle_reads_every_value_of_the_csaf_document(monkeypatch):
    # a router that never hides the source: the advisory's title (the first event's
    # csaf.tracking_id) shows the source's tracking id the agreement hides
    load = policy_agreements.agreement_from_dict
    monkeypatch.setattr(policy_agreements, "agreement_from_dict", lambda *a, **kw: dataclasses.replace(
        load(*a, **kw), _originator=policy_redact.FieldSelector()))
    kinds = audit(outputs=("csaf",))["leaks_by_kind"]
    assert "csaf: document: csaf.tracking_id in clear" in kinds, kinds


# --- ... nor on the STIX objects of the TAXII output ---------------------------------------------

def test_oracle_catches_a_taxii_output_that_lets_everything_through(monkeypatch):
    from intelmq_crossborder.bots.outputs.taxii import output
    from intelmq_crossborder.formats.stix import export as stix_export
    broken = types.SimpleNamespace(**{name: getattr(stix_export, name) for name in dir(stix_export)
                                      if not name.startswith("__")})
    broken.admit = lambda flat, settings: (dict(flat), Level.CLEAR)
    monkeypatch.setattr(output, "export", broken)
    kinds = audit(1000, outputs=("taxii",))["leaks_by_kind"]
    assert any(k.startswith("taxii: TLP:") and "above the output's max_tlp" in k for k in kinds), kinds
    assert any(k.startswith("taxii:") and "marked below" in k for k in kinds), kinds


def test_oracle_reads_the_stix_markings(monkeypatch):
    from intelmq_crossborder.formats.stix import export as stix_export
    real = stix_export.marking_ids
    monkeypatch.setattr(stix_export, "marking_ids", lambda level, profile: real(Level(max(0, level - 1)), profile))
    kinds = audit(1000, outputs=("taxii",))["leaks_by_kind"]
    assert any(k.startswith("taxii: indicator marked below") or k.startswith("taxii: observed-data marked below")
               for k in kinds), kinds


def test_oracle_catches_a_pseudonymous_originator_identity(monkeypatch):
    from intelmq_crossborder.formats.stix import export as stix_export
    monkeypatch.setattr(stix_export, "_source_pseudonymised", lambda copy: False)
    kinds = audit(1000, outputs=("taxii",))["leaks_by_kind"]
    assert "taxii: originator identity although the source is hidden" in kinds, kinds

