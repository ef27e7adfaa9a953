"""The independent graders of the demo consortium can fail: leak_check and loss_check on
hand-made results (no IntelMQ processes)."""
from pathlib import Path

from intelmq_crossborder import consortium
from intelmq_crossborder.consortium import Delivery

RC = Path(__file__).resolve().parent.parent / "runtime-configs"
ROUTERS = {"at-hub": {"router": RC / "national-hub" / "agreements"},
           "fi-hub": {"router": RC / "cross-border-hub" / "agreements",
                      "early-warning-router": RC / "cross-border-hub" / "agreements-early-warning"}}


def result(deliveries, audit=None):
    return {"deliveries": deliveries, "audit": audit or {}, "dumps": {}, "timeline": [], "routers": ROUTERS}


def ev(**kw):
    base = {"provenance.event_uuid": "u1", "classification.type": "scanner", "source.ip": "192.0.2.1"}
    base.update({k.replace("__", "."): v for k, v in kw.items()})
    return base


def test_clean_delivery_has_no_leak():
    r = result([Delivery("at-hub", "de-hub", [ev(sharing__tlp="GREEN")], "bundle")])
    assert consortium.leak_check(r) == []


def test_above_ceiling_removed_field_originator_and_missing_tlp_are_leaks():
    r = result([Delivery("at-hub", "de-hub", [ev(sharing__tlp="AMBER"), ev(sharing__tlp="GREEN", source__account="x"),
                                              ev(sharing__tlp="CLEAR", feed__name="at-sensor-feed"), ev()], "bundle"),
                Delivery("at-hub", "nobody", [ev(sharing__tlp="CLEAR")], "file")])
    leaks = consortium.leak_check(r)
    assert len(leaks) == 5, leaks
    text = "\n".join(leaks)
    assert "TLP:AMBER above the agreement's ceiling TLP:GREEN" in text
    assert "removed field source.account present" in text
    assert "originator field feed.name disclosed" in text
    assert "no readable sharing.tlp" in text
    assert "no agreement with this recipient" in text


def test_warnings_are_graded_under_the_early_warning_agreement():
    warning = ev(sharing__tlp="GREEN", classification__identifier=consortium.WARNING_ID)
    pooled = ev(sharing__tlp="GREEN")
    r = result([Delivery("fi-hub", "csirts-network", [warning, pooled], "file")])
    leaks = consortium.leak_check(r)
    assert len(leaks) == 1 and "TLP:GREEN above the agreement's ceiling TLP:CLEAR" in leaks[0]


def test_loss_check_compares_allowed_copies_with_arrivals():
    audit = {"at-hub": [{"recipient": "de-hub", "allowed": True, "reasons": []},
                        {"recipient": "de-hub", "allowed": True, "reasons": []},
                        {"recipient": "fi-hub", "allowed": False, "reasons": ["tlp-red: ..."]}]}
    r = result([Delivery("at-hub", "de-hub", [ev(sharing__tlp="GREEN")], "bundle")], audit)
    assert consortium.loss_check(r) == ["at-hub -> de-hub: the router allowed 2 event(s), 1 arrived"]
    assert consortium.withheld(r) == {"fi-hub": {("at-hub", "tlp-red"): 1}}
