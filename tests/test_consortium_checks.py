"""The independent graders of the demo consortium can fail: leak_check and loss_check on
hand-made results (no IntelMQ processes)."""
from pathlib import Path

from intelmq_crossborder.demo import consortium
from intelmq_crossborder.demo.consortium import Delivery

RC = Path(__file__).resolve().parent.parent / "intelmq_crossborder" / "pipelines"
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
    assert "no readable TLP label" in text
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


def test_every_label_counts_in_the_leak_check():
    """sharing.tlp GREEN beside a tlp:red tag arrived: a leak (the check read only sharing.tlp before)."""
    lowered = ev(sharing__tlp="GREEN", extra__misp_tags=[{"name": "tlp:red"}])
    leaks = consortium.leak_check(result([Delivery("at-hub", "at-csirt", [lowered], "file")]))
    assert leaks and "TLP:RED above the agreement's ceiling TLP:AMBER" in leaks[0]
    lookalike = ev(sharing__tlp="GREEN", extra__tags="tlp\u200b:red")
    leaks = consortium.leak_check(result([Delivery("at-hub", "at-csirt", [lookalike], "file")]))
    assert leaks and "labels that cannot be read arrived" in leaks[0] and "extra.tags[0]" in leaks[0]


def test_a_hidden_source_is_a_leak_even_where_the_agreement_discloses_sources():
    """at-csirt's agreement discloses sources; an event flagged tlp:ex:chr still must not name its
    originator or point at its systems (event_description.url is in tlp.SOURCE_FIELDS)."""
    hidden = ev(sharing__tlp="GREEN", extra__misp_tags=[{"name": "tlp:ex:chr"}],
                event_description__url="https://misp.originator.example/events/view/7")
    leaks = consortium.leak_check(result([Delivery("at-hub", "at-csirt", [hidden], "file")]))
    assert leaks == ["at-hub -> at-csirt: event u1: originator field event_description.url disclosed"]
    shown = ev(sharing__tlp="GREEN", event_description__url="https://misp.originator.example/events/view/7")
    assert consortium.leak_check(result([Delivery("at-hub", "at-csirt", [shown], "file")])) == []


def test_report_counts_effective_labels():
    r = result([Delivery("at-hub", "at-csirt", [ev(sharing__tlp="GREEN", extra__tlp="AMBER"),
                                                ev(sharing__tlp="GREEN", extra__tlp=["RED"], source__ip="192.0.2.2")],
                         "file")])
    assert sorted(consortium.received(r)["at-csirt"].values()) == ["(unreadable)", "AMBER"]
    from intelmq_crossborder.demo import first_pipeline as demo
    text = demo.summarise({"events": [ev(sharing__tlp="GREEN", extra__tlp="AMBER"), ev(extra__tlp=["RED"])],
                           "dumps": {}, "input_count": 2})
    assert "TLP:AMBER" in text and "TLP:(unreadable)" in text and "TLP:GREEN" not in text


def test_a_received_line_with_a_duplicate_key_is_not_read_as_one_of_its_values(tmp_path):
    import pytest
    from intelmq_crossborder.runtime.instance import PipelineError
    out = tmp_path / "out.jsonl"
    out.write_text('{"sharing.tlp": "GREEN"}\n{"sharing.tlp": "RED", "sharing.tlp": "GREEN"}\n')
    with pytest.raises(PipelineError, match=r"out\.jsonl:2: .*duplicate key 'sharing\.tlp'"):
        consortium.read_jsonl(out)
    out.write_text('{"sharing.tlp": "GREEN"}\n')
    assert consortium.read_jsonl(out) == [{"sharing.tlp": "GREEN"}]
