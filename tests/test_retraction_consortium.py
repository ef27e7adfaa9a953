"""The consortium test of retractions: real bot processes, four IntelMQ instances (three hubs and
a CSIRT, the small data set).  After the nightly exchange de-hub withdraws one event and erases
another that reached the AT CSIRT through at-hub: each retraction crosses two hubs, reaches the
CSIRT's outputs, and at-hub's confirmation comes back to de-hub."""
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from intelmq_crossborder.demo import consortium, retraction
from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.runtime.retraction import find_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(consortium_dbs):
    work = Path(tempfile.mkdtemp(prefix="xb-retraction-consortium-"))
    cons = consortium.Consortium(work, consortium.default_members(small=True), dbs=consortium_dbs, timeout=120)
    cons._t0 = time.monotonic()
    cons.setup()
    for name, inst in cons.instances.items():          # what the lead wires into Consortium.setup
        retraction.wire(inst.runtime, name)
        inst.setup()
    try:
        cons.start()
        cons.day()
        cons.night()
        cons.stop()
        before = retraction.read_outputs(cons)
        result = retraction.run_phase(cons)
        yield cons, before, result
    finally:
        cons.stop()
        cons.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def test_both_retractions_cross_two_hubs_and_reach_the_csirt(run):
    cons, _, result = run
    assert not result.get("error"), result
    by_action = {r["action"]: r for r in result["issued"]}
    assert set(by_action) == {"withdraw", "erase"}
    for r in result["issued"]:
        members = r["members"]
        assert members["de-hub"]["outcome"] == "routed" and "at-hub" in members["de-hub"]["holders"]
        assert members["at-hub"]["outcome"] == "routed" and members["at-hub"]["from_peer"] == "de-hub"
        assert "at-csirt" in members["at-hub"]["holders"]
        assert members["at-csirt"]["outcome"] == "routed" and members["at-csirt"]["from_peer"] == "at-hub"
        assert members["at-csirt"]["holders"], "the CSIRT's own recipients got it"
        assert {c["hub"] for c in r["confirmations"]} >= {"at-hub"}
        assert r["unconfirmed"] == []
        assert r["still_holding_index"] == []


def test_the_csirts_outputs_carry_a_tombstone_and_no_retraction_carries_content(run):
    cons, _, result = run
    outputs = retraction.read_outputs(cons)
    soc = [rec for where, recs in outputs.items() if where.startswith("at-csirt:") and "soc" in where for rec in recs]
    ids = {r["id"] for r in result["issued"]}
    tombstones = [rec for rec in soc if rec.get("retraction.id") in ids]
    assert {t["retraction.action"] for t in tombstones} == {"withdraw", "erase"}
    for t in tombstones:
        assert not [k for k in t if not (k.startswith("retraction.") or k in ("provenance.hub_path",
                                                                               "sharing.agreement", "__type"))]


def test_the_report_section_and_the_independent_check(run):
    cons, _, result = run
    text = retraction.report_section(result)
    print(text)                                   # shown with pytest -s: what make demo's report will show
    assert text.count("still holding:") == 2
    withdraw = next(r for r in result["issued"] if r["action"] == "withdraw")
    assert withdraw["still_holding_outputs"] == {}, withdraw       # every copy is followed by its tombstone
    erase = next(r for r in result["issued"] if r["action"] == "erase")
    assert erase["erased_values"] > 0
    # the erase's values: whatever output still holds them is named (the outputs' side erases them)
    assert all(":" in where for where in erase["still_holding_outputs"])


def test_status_on_the_originating_hub(run):
    cons, _, result = run
    where = find_router(cons.instances["de-hub"].etc / "runtime.yaml", "router")
    with H.Holdings(where.holdings, readonly=True) as index:
        for r in result["issued"]:
            status = index.status(r["id"])
            assert status["outcome"] == "routed" and status["unconfirmed"] == []
            assert "at-hub" in {c["hub"] for c in status["confirmations"]}
