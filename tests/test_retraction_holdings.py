"""The holdings index (policy.holdings): compact rows, lookups, catching up with the audit trail
(rotation, half-written lines, damaged lines, several processes), pruning; and the router's
library part (policy.retraction_router) without IntelMQ."""
import json
import os
import uuid

import pytest

from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.policy import audit, holdings as H
from intelmq_crossborder.policy.agreements import agreement_from_dict
from intelmq_crossborder.policy.decide import Decision
from intelmq_crossborder.policy.retraction import confirmation, new_retraction
from intelmq_crossborder.policy.retraction_router import RetractionRouter, peer_of

U = [str(uuid.UUID(int=i + 1, version=4)) for i in range(10)]
F = [f"{i:02x}" * 32 for i in range(10)]


def allowed(recipient, level="GREEN"):
    return Decision(True, [f"allowed: TLP:{level} within TLP:AMBER (constituent)"], None, recipient)


def denied(recipient):
    return Decision(False, ["tlp-above-ceiling: TLP:AMBER is above what the agreement admits (TLP:GREEN)"], None,
                    recipient)


def write(trail, i, decisions, extra=""):
    trail.write_decisions(decisions, event_uuid=U[i], fingerprint=F[i], tlp="GREEN", tlp_from="sharing.tlp",
                          extra=extra)


def test_pack_refuses_what_is_not_an_id():
    assert H.pack_uuid(U[0]) == bytes.fromhex(U[0].replace("-", ""))
    for bad in ("ABCDEF00-0000-4000-8000-000000000001", U[0] + "\n", "x", 5, ["a"]):
        with pytest.raises(ValueError):
            H.pack_uuid(bad)
    for bad in ("AB" * 32, F[0][:-1], F[0] + " "):
        with pytest.raises(ValueError):
            H.pack_fingerprint(bad)


def test_catch_up_follows_the_audit_trail_across_rotation_and_half_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    trail = audit.AuditTrail(path, max_bytes=700)
    index = H.Holdings(tmp_path / "h.sqlite")
    write(trail, 0, [allowed("cert-at"), denied("ee-isac")])
    assert index.catch_up(path) == 1
    assert index.catch_up(path) == 0                       # nothing new, nothing twice
    extra = audit.encode_copies("de-hub", {"ee-isac": {"u": U[9], "f": F[9], "h": 1}}, "AMBER")
    for i in range(1, 6):                                  # several rotations
        write(trail, i, [allowed("cert-at", "AMBER"), allowed("ee-isac")], extra)
    assert len(audit.rotated_files(path)) > 2
    with open(path, "ab") as fh:
        fh.write(b'{"time": "half a line')                 # being written: read next time
    assert index.catch_up(path) == 10
    copy = next(c for c in index.copies(U[3]) if c.recipient == "ee-isac")
    assert (copy.sent_uuid, copy.sent_fingerprint, copy.hidden, copy.pap) == (U[9], F[9], True, "AMBER")
    assert next(c for c in index.copies(U[3]) if c.recipient == "cert-at").level is Level.AMBER
    assert index.received_from(U[3]) == {"de-hub"}
    assert index.copies(fingerprint=F[2], scope="indicator")[0].event_uuid == U[2]
    with open(path, "ab") as fh:
        fh.write(b'", "oops": [}\nnot json\n[1,2]\n')      # the half line ends damaged, then more junk
    write(trail, 7, [allowed("cert-at")])
    assert index.catch_up(path) == 1
    assert int(index.meta("skipped")) == 2                 # the damaged line and "not json"
    trail.close()
    # a new index reads everything from the first piece: the same copies
    again = H.Holdings(tmp_path / "again.sqlite")
    again.catch_up(path)
    rows = "SELECT hex(uuid), recipient, hex(s_uuid), level, hidden FROM sent ORDER BY 1, 2"
    assert H.query_any(again, rows) == H.query_any(index, rows)


def test_two_processes_catching_up_never_add_a_record_twice(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path) as trail:
        for i in range(6):
            write(trail, i, [allowed("cert-at")])
    one, two = H.Holdings(tmp_path / "h.sqlite"), H.Holdings(tmp_path / "h.sqlite")
    assert one.catch_up(path, max_lines=4) == 4
    assert two.catch_up(path) == 2
    assert one.catch_up(path) == 0
    assert H.query_any(one, "SELECT count(*) FROM sent")[0][0] == 6


def test_retraction_lines_are_not_copies(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path) as trail:
        write(trail, 0, [allowed("cert-at")])
        trail.write_retraction({"retraction": U[5], "action": "erase", "event_uuid": U[0],
                                "deliveries": [{"recipient": "cert-at"}]})
    index = H.Holdings(tmp_path / "h.sqlite")
    assert index.catch_up(path) == 1
    assert [r["recipient"] for r in audit.read_records(path)] == ["cert-at"]
    assert [r["retraction"] for r in audit.read_retractions(path)] == [U[5]]


def test_prune_keeps_the_newest(tmp_path):
    index = H.Holdings(tmp_path / "h.sqlite", max_rows=3)
    for i in range(6):
        index.record_sent(U[i], F[i], [("cert-at", None, None, "GREEN", None, False)])
    index._prune()
    assert [c.event_uuid for i in range(6) for c in index.copies(U[i])] == U[3:6]
    assert index.meta("pruned") == "3"


def test_readonly_needs_an_index(tmp_path):
    with pytest.raises(H.HoldingsError, match="no holdings index"):
        H.Holdings(tmp_path / "missing.sqlite", readonly=True)


AGREEMENTS = [agreement_from_dict(d) for d in (
    {"recipient": "cert-at", "name": "CERT", "kind": "csirt", "country": "AT", "relation": "constituent",
     "max_tlp": "AMBER"},
    {"recipient": "de-hub", "name": "DE", "kind": "national-hub", "country": "DE", "relation": "community",
     "max_tlp": "GREEN", "hub_id": "de-hub"},
    {"recipient": "soc", "name": "SOC", "kind": "csirt", "country": "AT", "relation": "same-organisation",
     "max_tlp": "AMBER+STRICT", "disclose_source": True, "max_pap": "AMBER"},
)]


@pytest.fixture
def router(tmp_path):
    index = H.Holdings(tmp_path / "h.sqlite")
    index.record_sent(U[0], F[0], [("cert-at", None, None, "GREEN", None, True),
                                   ("de-hub", U[8], F[8], "GREEN", None, True),
                                   ("soc", None, None, "GREEN", "CLEAR", False)])
    index.record_sent(U[1], F[1], [("cert-at", None, None, "GREEN", None, True)], peer="de-hub")
    return RetractionRouter(index, AGREEMENTS, "at-hub", ["cert-at", "de-hub", "soc"])


def test_plan_withdraw_names_each_copy_and_commits(router):
    msg = new_retraction("withdraw", "fp", "at-hub", target_event_uuid=U[0], target_fingerprint=F[0])
    plan = router.plan(msg)
    assert plan.outcome == "routed"
    sent = {r: (e["retraction.target_event_uuid"], e.get("retraction.target_fingerprint")) for r, e in plan.items}
    assert sent == {"cert-at": (U[0], F[0]), "de-hub": (U[8], F[8]), "soc": (U[0], F[0])}
    assert all(e["provenance.hub_path"] == "at-hub" for _, e in plan.items)
    router.commit(plan)
    assert router.holdings.still_held(U[0]) == []
    assert router.plan(msg).items == plan.items          # a retry goes to the same holders
    assert router.holdings.status(msg.id)["unconfirmed"] == ["de-hub"]


def test_plan_relabel_pap_and_source(router):
    msg = new_retraction("relabel", "x", "at-hub", target_event_uuid=U[0], new_tlp="AMBER", new_pap="RED")
    plan = router.plan(msg)
    actions = {r: e["retraction.action"] for r, e in plan.items}
    assert actions == {"cert-at": "relabel", "de-hub": "withdraw", "soc": "withdraw"}   # soc: max_pap AMBER
    removal = dict(plan.items)["de-hub"]
    assert "retraction.new_tlp" not in removal and "tlp-above-ceiling" in removal["retraction.reason"]
    router.commit(plan)
    held = router.holdings.copies(U[0], held_only=True)
    assert [(c.recipient, c.level, c.pap) for c in held] == [("cert-at", Level.AMBER, "RED")]
    lower = new_retraction("relabel", "x", "at-hub", target_event_uuid=U[0], new_tlp="GREEN")
    assert router.plan(lower).outcome == "refused: lowers-label (retraction.new_tlp)"


def test_plan_who_may(router):
    assert router.plan(new_retraction("withdraw", "x", "fr-hub", target_event_uuid=U[0])).outcome \
        == "refused: not-originator"
    assert router.plan(new_retraction("withdraw", "x", "at-hub", target_event_uuid=U[1])).outcome \
        == "refused: not-originator"
    peer = new_retraction("erase", "x", "de-hub", target_event_uuid=U[1])
    from dataclasses import replace
    plan = router.plan(replace(peer, hub_path=("de-hub",)))
    assert plan.outcome == "routed" and [r for r, _ in plan.items] == ["cert-at"]
    assert dict(plan.items)["cert-at"]["provenance.hub_path"] == "de-hub,at-hub"
    conf = router.confirmation_event(plan)
    assert conf[0] == "de-hub" and conf[1]["retraction.confirmed_by"] == "at-hub"
    assert conf[1]["retraction.holders_reached"] == 1
    other = router.plan(replace(peer, hub_path=("fr-hub",)))
    assert other.outcome == "refused: not-sent-by-peer" and other.items == []
    assert router.plan(replace(peer, hub_path=("at-hub", "de-hub"))).outcome == "loop"
    stamped = router.plan(replace(peer, hub_path=("de-hub", "at-hub")))          # an outbound stamp added us
    assert stamped.outcome == "routed" and stamped.from_peer == "de-hub"


def test_confirmations_only_from_the_confirming_hub(router):
    from dataclasses import replace
    msg = new_retraction("withdraw", "x", "at-hub", target_event_uuid=U[0])
    router.commit(router.plan(msg))
    conf = confirmation(msg, "de-hub", 2)
    assert router.plan(replace(conf, hub_path=("fr-hub",))).refused
    plan = router.plan(replace(conf, hub_path=("de-hub",)))
    router.commit(plan)
    assert router.holdings.status(msg.id)["unconfirmed"] == []


def test_peer_of():
    assert peer_of(["de-hub", "at-hub"], "at-hub") == "de-hub"
    assert peer_of(["at-hub"], "at-hub") is None
    assert peer_of(["fi-hub", "de-hub"], "at-hub") == "de-hub"
    assert peer_of(["de-hub"], None) is None


def test_audit_lines_of_a_retraction_hold_ids_only(tmp_path, router):
    msg = new_retraction("erase", "personal data", "at-hub", target_event_uuid=U[0])
    plan = router.plan(msg)
    entry = json.dumps(plan.audit_entry())
    assert U[0] in entry and "personal data" not in entry
    assert os.path.exists(router.holdings.path)


def test_an_indicator_retraction_reaches_every_event_with_the_fingerprint(tmp_path):
    index = H.Holdings(tmp_path / "h.sqlite")
    index.record_sent(U[0], F[5], [("cert-at", None, None, "GREEN", None, True)])
    index.record_sent(U[1], F[5], [("soc", None, None, "GREEN", None, False),
                                   ("de-hub", U[7], F[7], "GREEN", None, True)])
    index.record_sent(U[2], F[6], [("cert-at", None, None, "GREEN", None, True)])
    router = RetractionRouter(index, AGREEMENTS, "at-hub", ["cert-at", "de-hub", "soc"])
    msg = new_retraction("withdraw", "the indicator was wrong", "at-hub", scope="indicator", target_fingerprint=F[5])
    plan = router.plan(msg)
    sent = sorted((r, e["retraction.target_fingerprint"], e["retraction.scope"]) for r, e in plan.items)
    assert sent == [("cert-at", F[5], "indicator"), ("de-hub", F[7], "indicator"), ("soc", F[5], "indicator")]
    assert all("retraction.target_event_uuid" not in e for _, e in plan.items)
    router.commit(plan)
    assert index.still_held(fingerprint=F[5], scope="indicator") == []
    assert index.still_held(U[2]) == ["cert-at"]


def test_the_demo_wiring_of_a_ready_pipeline(tmp_path):
    from intelmq_crossborder.demo.retraction import wire
    from intelmq_crossborder.runtime.instance import PIPELINES_DIR, load_runtime
    runtime = wire(load_runtime(PIPELINES_DIR / "cross-border-hub" / "runtime.yaml", tmp_path), "fi-hub")
    assert runtime["router"]["parameters"]["hub_id"] == "fi-hub"
    assert runtime["early-warning-router"]["parameters"]["hub_id"] == "fi-hub"
    # the ready cross-border hub sends peers' retractions through its early warning (corrections)
    assert runtime["exchange-parser"]["parameters"]["destination_queues"]["retractions"] == ["early-warning-queue"]
    again = wire(runtime, "other")                       # never overrides what is set
    assert again["router"]["parameters"]["hub_id"] == "fi-hub"
