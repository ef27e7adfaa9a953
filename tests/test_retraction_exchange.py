"""exchange.retractions and Spool.rewrite without IntelMQ: what the sender's spool keeps after a
retraction, and the receiver's check of who sent it."""
import json
from dataclasses import replace

import pytest

from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.exchange import retractions as xr
from intelmq_crossborder.exchange.spool import Spool
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.policy.retraction import RetractionError, confirmation, new_retraction

U1, U2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def line(n, uuid, **extra):
    rec = {"source.ip": f"192.0.2.{n}", "sharing.tlp": "GREEN", "provenance.event_uuid": uuid,
           "provenance.originator": "cert-secret", "feed.name": "Secret feed", **extra}
    return json.dumps(rec, sort_keys=True).encode()


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool", tmp_path / "outbox", "de-hub", "fr-hub", bundle.generate_private_key())
    s.recover()
    s.append(line(1, U1))
    s.append(line(2, U2, **{"sharing.pap": "GREEN"}))
    return s


def records(spool):
    return [json.loads(x) for x in (spool.dir / Spool.SPOOL).read_bytes().splitlines()]


def test_erase_takes_the_line_out_of_the_file(spool):
    msg = new_retraction("erase", "personal data", "de-hub", target_event_uuid=U1)
    assert xr.apply_to_spool(spool, msg, Level.AMBER) == (1, 0)
    assert b"192.0.2.1\"" not in (spool.dir / Spool.SPOOL).read_bytes()
    assert spool.count == 1
    spool.append(xr.retraction_line(msg.to_event())[1])
    assert spool.count == 2 and [r.get("retraction.id") for r in records(spool)] == [None, msg.id]
    # a later retraction leaves earlier retraction lines alone
    assert xr.apply_to_spool(spool, new_retraction("withdraw", "x", "de-hub", target_event_uuid=U2), Level.AMBER) \
        == (1, 0)
    assert [r.get("retraction.id") for r in records(spool)] == [msg.id]


def test_relabel_never_lowers_hides_the_source_and_respects_max_tlp(spool):
    msg = new_retraction("relabel", "x", "de-hub", target_event_uuid=U2, new_tlp="AMBER", new_pap="CLEAR",
                         new_do_not_disclose_source=True)
    assert xr.apply_to_spool(spool, msg, Level.AMBER) == (0, 1)
    rec = next(r for r in records(spool) if r["provenance.event_uuid"] == U2)
    assert rec["sharing.tlp"] == "AMBER" and rec["sharing.pap"] == "GREEN"          # PAP never lowered
    assert rec["sharing.do_not_disclose_source"] is True
    assert "provenance.originator" not in rec and "feed.name" not in rec
    above = new_retraction("relabel", "x", "de-hub", target_event_uuid=U1, new_tlp="AMBER")
    assert xr.apply_to_spool(spool, above, Level.GREEN) == (1, 0)                    # above the exchange's max_tlp


def test_a_confirmation_changes_nothing_and_an_empty_spool_is_fine(spool, tmp_path):
    msg = new_retraction("erase", "x", "de-hub", target_event_uuid=U1)
    assert xr.apply_to_spool(spool, confirmation(msg, "fr-hub", 1), Level.AMBER) == (0, 0)
    empty = Spool(tmp_path / "s2", tmp_path / "o2", "de-hub", "fr-hub", bundle.generate_private_key())
    assert xr.apply_to_spool(empty, msg, Level.AMBER) == (0, 0)


def test_a_half_written_last_line_is_not_kept(spool):
    spool.close()
    with open(spool.dir / Spool.SPOOL, "ab") as fh:
        fh.write(b'{"source.ip": "192.0.2.9"')
    msg = new_retraction("withdraw", "x", "de-hub", target_event_uuid=U1)
    assert xr.apply_to_spool(spool, msg, Level.AMBER) == (1, 0)
    assert b"192.0.2.9" not in (spool.dir / Spool.SPOOL).read_bytes()


def test_check_received():
    msg = new_retraction("withdraw", "x", "at-hub", target_event_uuid=U1)
    ok = replace(msg, hub_path=("at-hub", "de-hub"))
    assert xr.check_received(ok.to_event(), "de-hub") == ok
    for event, sender, field in ((ok.to_event(), "fr-hub", "provenance.hub_path"),
                                 (msg.to_event(), "de-hub", "provenance.hub_path"),
                                 (ok.to_event(), None, "provenance.hub_path"),
                                 (replace(confirmation(msg, "at-hub", 1), hub_path=("de-hub",)).to_event(), "de-hub",
                                  "retraction.confirmed_by")):
        with pytest.raises(RetractionError) as info:
            xr.check_received(event, sender)
        assert info.value.field == field
