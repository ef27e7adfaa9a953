"""The standing leak audit (tests/leak_audit.py): 100,000 random events x 24 random agreements
through the router decision, a redaction expert and every output's TLP guard; 0 leaks.

XB_LEAK_EVENTS overrides the number of events (e.g. 1000000 for a long run).
"""
import dataclasses
import json
import os

import pytest

import leak_audit
from intelmq_crossborder import policy
from intelmq_crossborder.tlp import Level

EVENTS = int(os.environ.get("XB_LEAK_EVENTS", "100000"))


def test_leak_audit_zero_leaks(capsys):
    result = leak_audit.run(EVENTS, 24)
    with capsys.disabled():
        print("\nleak audit:", json.dumps({k: result[k] for k in ("events", "agreements", "counts", "leaks",
                                                                 "events_by_true_tlp", "seconds")}))
    assert result["events"] >= 100_000 or "XB_LEAK_EVENTS" in os.environ
    assert result["agreements"] >= 20
    counts = result["counts"]
    # the audit must exercise every path, or a 0 means nothing
    assert counts["router allowed"] > 1000 and counts["router denied"] > 1000
    assert counts["exchange written"] > 1000 and counts["csaf written"] > 1000 and counts["misp_feed written"] > 1000
    assert counts["exchange guard withheld"] > 100 and counts["csaf guard withheld"] > 100
    assert all(result["events_by_true_tlp"].get(k, 0) > 100 for k in
               ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED", "None", "unknown"))
    assert result["leaks"] == 0, json.dumps(result["examples"], indent=1, default=str)


# --- the oracle is not a rubber stamp: a broken router or redaction is caught ---------------------

def test_oracle_catches_a_router_that_ignores_the_ceiling(monkeypatch):
    # break both places the router takes a ceiling from: tlp_ceiling() and the
    # ceiling an Agreement caches when it is loaded
    monkeypatch.setattr(policy, "tlp_ceiling", lambda agreement: Level.AMBER_STRICT)
    load = policy.agreement_from_dict
    monkeypatch.setattr(policy, "agreement_from_dict", lambda *a, **kw: dataclasses.replace(
        load(*a, **kw), _ceiling=Level.AMBER_STRICT))
    result = leak_audit.run(3000, 24)
    assert result["leaks"] > 0
    assert any("above the relation cap" in k or "above max_tlp" in k for k in result["leaks_by_kind"])


def test_oracle_catches_a_redaction_that_removes_nothing(monkeypatch):
    real = policy.redact
    monkeypatch.setattr(policy, "redact", lambda event, **kw: (dict(event), [], []))
    monkeypatch.setattr(policy.Agreement, "_remove", policy.FieldSelector(), raising=False)
    result = leak_audit.run(3000, 24)
    assert real is not policy.redact
    assert any("in clear" in k for k in result["leaks_by_kind"]), result["leaks_by_kind"]


def test_oracle_catches_an_output_guard_that_lets_everything_through(monkeypatch):
    from intelmq_crossborder.bots.outputs.exchange import output
    monkeypatch.setattr(output.tlp.Level, "from_label", classmethod(lambda cls, label: Level.CLEAR))
    result = leak_audit.run(3000, 24)
    assert any(k.startswith("exchange: TLP") for k in result["leaks_by_kind"]), result["leaks_by_kind"]
