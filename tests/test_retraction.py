"""The retraction message (policy.retraction): strict reading, no content, only lowers exposure."""
import uuid

import pytest
from intelmq.lib.message import Event

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.policy import retraction as r
from intelmq_crossborder.harmonization import merged_harmonization

UUID = "2f1e0a4c-3d5b-4e6f-8a7b-9c0d1e2f3a4b"
FP = "a" * 64


def _event(**extra):
    ev = {"retraction.id": "11111111-2222-4333-8444-555555555555", "retraction.action": "withdraw",
          "retraction.reason": "false positive", "retraction.time": "2026-12-01T10:00:00+00:00",
          "retraction.originator": "at-hub", "retraction.scope": "event", "retraction.target_event_uuid": UUID}
    ev.update(extra)
    return {k: v for k, v in ev.items() if v is not None}


def test_round_trip_and_is_retraction():
    ev = _event(**{"retraction.target_fingerprint": FP})
    msg = r.Retraction.from_event(ev)
    assert msg.action == "withdraw" and msg.target_event_uuid == UUID and msg.target_fingerprint == FP
    assert msg.to_event() == ev
    assert r.is_retraction(ev) and not r.is_retraction({"source.ip": "192.0.2.1"})
    assert not r.is_confirmation(ev)


def test_the_fields_validate_in_an_intelmq_event_with_our_harmonization():
    harm = merged_harmonization()
    msg = r.new_retraction("relabel", "was too low", "at-hub", target_event_uuid=UUID, target_fingerprint=FP,
                           new_tlp="AMBER", new_pap="RED", new_do_not_disclose_source=True)
    event = Event(harmonization=harm)
    for key, value in msg.to_event().items():
        event.add(key, value)
    assert r.Retraction.from_event(dict(event)) == msg
    conf = r.confirmation(msg, "de-hub", 3)
    event = Event(harmonization=harm)
    for key, value in conf.to_event().items():
        event.add(key, value)
    back = r.Retraction.from_event(dict(event))
    assert back.is_confirmation and back.confirmed_by == "de-hub" and back.holders_reached == 3


@pytest.mark.parametrize("field,value,says", [
    ("retraction.id", "not-a-uuid", "lowercase UUID"),
    ("retraction.id", UUID.upper(), "lowercase UUID"),
    ("retraction.id", UUID + "\n", "white space"),
    ("retraction.id", 42, "must be a string"),
    ("retraction.action", "delete", "not one of"),
    ("retraction.action", ["withdraw"], "must be a string"),
    ("retraction.originator", "at-hub ", "white space"),
    ("retraction.originator", "аt-hub", "look-alike"),         # Cyrillic а
    ("retraction.target_event_uuid", "2f1e0a4c-3d5b-4e6f-8a7b-9c0d1e2f3a4b\u200b", "look-alike"),
    ("retraction.time", "yesterday", "UTC time"),
    ("retraction.time", "2026-12-01T10:00:00+02:00", "UTC time"),
    ("retraction.scope", "everything", "not one of"),
    ("retraction.reason", "x" * 5000, "longer than"),
    ("retraction.reason", None, "missing"),
    ("retraction.colour", "red", "unknown retraction field"),
    ("source.ip", "192.0.2.1", "no event content"),
    ("sharing.tlp", "RED", "no event content"),
    ("retraction.new_tlp", "RED", "only a relabel"),
    ("provenance.hub_path", "at-hub,,", "hub ids"),
])
def test_hostile_fields_are_refused_naming_the_field(field, value, says):
    ev = _event()
    if value is None:
        del ev[field]
    else:
        ev[field] = value
    with pytest.raises(r.RetractionError) as info:
        r.Retraction.from_event(ev)
    assert info.value.field == field
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)


def test_not_a_mapping_and_missing_target():
    with pytest.raises(r.RetractionError):
        r.Retraction.from_event(["retraction.id"])
    ev = _event()
    del ev["retraction.target_event_uuid"]
    with pytest.raises(r.RetractionError, match="uuid or fingerprint"):
        r.Retraction.from_event(ev)
    with pytest.raises(r.RetractionError, match="indicator's fingerprint"):
        r.Retraction.from_event(_event(**{"retraction.scope": "indicator"}))


@pytest.mark.parametrize("label,field", [("PURPLE", "retraction.new_tlp"), ("tlp:rеd", "retraction.new_tlp"),
                                         (["RED"], "retraction.new_tlp")])
def test_relabel_labels_fail_closed(label, field):
    with pytest.raises(r.RetractionError) as info:
        r.Retraction.from_event(_event(**{"retraction.action": "relabel", field: label}))
    assert info.value.field == field


def test_relabel_rules():
    with pytest.raises(r.RetractionError, match="names a new TLP"):
        r.new_retraction("relabel", "x", "at-hub", target_event_uuid=UUID)
    with pytest.raises(r.RetractionError, match="only lowers exposure") as info:
        r.new_retraction("relabel", "x", "at-hub", target_event_uuid=UUID, new_do_not_disclose_source=False)
    assert info.value.field == "retraction.new_do_not_disclose_source"
    with pytest.raises(r.RetractionError):
        r.Retraction.from_event(_event(**{"retraction.action": "relabel", "retraction.new_do_not_disclose_source": "yes"}))
    msg = r.new_retraction("relabel", "too low", "at-hub", target_event_uuid=UUID, new_tlp="tlp:amber")
    assert msg.new_tlp is Level.AMBER
    msg.check_relabel(Level.GREEN)
    msg.check_relabel(Level.AMBER)
    with pytest.raises(r.RetractionError, match="lower than the event's TLP:RED"):
        msg.check_relabel(Level.RED)
    pap = r.new_retraction("relabel", "x", "at-hub", target_event_uuid=UUID, new_pap="PAP:GREEN")
    pap.check_relabel(held_pap="CLEAR")
    with pytest.raises(r.RetractionError, match="PAP"):
        pap.check_relabel(held_pap="AMBER")
    assert msg.new_level(Level.RED) is Level.RED      # never lowers a copy


def test_instruction_per_action():
    w = r.new_retraction("withdraw", "fp", "at-hub", target_event_uuid=UUID)
    e = r.new_retraction("erase", "personal data", "at-hub", target_event_uuid=UUID)
    rl = r.new_retraction("relabel", "low", "at-hub", target_event_uuid=UUID, new_tlp="AMBER+STRICT")
    other = str(uuid.uuid4())
    assert r.instruction(w, event_uuid=UUID) == r.TOMBSTONE
    assert r.instruction(w, event_uuid=other, fingerprint=FP) == r.KEEP
    assert r.instruction(e, event_uuid=UUID) == r.REMOVE
    assert r.instruction(rl, event_uuid=UUID, level=Level.GREEN) == r.RELABEL
    assert r.instruction(rl, event_uuid=UUID, level=Level.GREEN, ceiling=Level.AMBER) == r.REMOVE
    assert r.instruction(rl, event_uuid=UUID, level=Level.GREEN, ceiling=Level.AMBER_STRICT) == r.RELABEL
    assert r.instruction(r.confirmation(w, "de-hub", 1), event_uuid=UUID) == r.KEEP
    ind = r.new_retraction("withdraw", "fp", "at-hub", scope="indicator", target_fingerprint=FP)
    assert r.instruction(ind, event_uuid=other, fingerprint=FP) == r.TOMBSTONE
    assert r.instruction(ind, event_uuid=UUID, fingerprint="b" * 64) == r.KEEP
    # an event retraction by fingerprint only
    by_fp = r.new_retraction("withdraw", "fp", "at-hub", target_fingerprint=FP)
    assert r.instruction(by_fp, fingerprint=FP) == r.TOMBSTONE


def test_holder_copy_and_removal_do_not_tell_new_labels():
    rl = r.new_retraction("relabel", "low", "at-hub", target_event_uuid=UUID, target_fingerprint=FP, new_tlp="RED")
    derived = str(uuid.uuid4())
    held = rl.for_holder(derived, "c" * 64)
    assert held.target_event_uuid == derived and held.target_fingerprint == "c" * 64
    removal = rl.as_removal("TLP:RED is above the agreement")
    assert removal.action == "withdraw" and removal.new_tlp is None
    assert "retraction.new_tlp" not in removal.to_event()


def test_a_retraction_is_never_label_read():
    """Its new_tlp field is refused by the label reader: every module asks is_retraction first."""
    rl = r.new_retraction("relabel", "low", "at-hub", target_event_uuid=UUID, new_tlp="RED")
    with pytest.raises(tlp.LabelError):
        tlp.event_tlp(rl.to_event())
