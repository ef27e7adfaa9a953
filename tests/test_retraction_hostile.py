"""Hostile input around retractions: the message reader never raises anything but RetractionError
(naming a field); `retract` and `retraction status` end with a documented status and a clear
line on hostile runtime configs, holdings files and arguments, never a traceback."""
import json
import sqlite3
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests import hostile
from tests.hostile import assert_clean, run_cli

from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.policy.retraction import FIELDS, Retraction, RetractionError

pytestmark = pytest.mark.fuzz

UUID = "5b0e6bd4-3c1e-4d2f-9a51-0c3d2b1a0f00"
VALID = {"retraction.id": "11111111-2222-4333-8444-555555555555", "retraction.action": "relabel",
         "retraction.reason": "too low", "retraction.time": "2026-12-01T10:00:00+00:00",
         "retraction.originator": "at-hub", "retraction.scope": "event", "retraction.target_event_uuid": UUID,
         "retraction.new_tlp": "AMBER"}
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8)


@hostile.hostile_settings(300)
@given(st.data())
def test_the_reader_names_a_field_or_reads(data):
    event = dict(VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(list(FIELDS) + ["provenance.hub_path", "source.ip", "retraction.x"]))
        kind = data.draw(st.sampled_from(["value", "lookalike", "pad", "delete"]))
        if kind == "delete":
            event.pop(name, None)
        elif kind == "lookalike":
            event[name] = data.draw(hostile.lookalike())
        elif kind == "pad":
            event[name] = str(event.get(name, "x")) + data.draw(st.sampled_from([" ", "\n", "\u200b", "\t"]))
        else:
            event[name] = data.draw(VALUES)
    try:
        msg = Retraction.from_event(event)
    except RetractionError as exc:
        assert exc.field is None or isinstance(exc.field, str)
        return
    assert Retraction.from_event(msg.to_event()) == msg          # what it read, it writes back the same


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("retraction-hostile")


ROUTER = {"module": "intelmq.bots.experts.crossborder.sharing_router.expert",
          "parameters": {"agreements_dir": "/nonexistent", "hub_id": "at-hub", "holdings_db": "HOLDINGS",
                         "source_queue": "router-queue"}}


def _holdings(folder: Path, kind: str) -> Path:
    path = folder / "holdings.sqlite"
    if kind == "ok":
        with H.Holdings(path) as index:
            index.record_sent(UUID, None, [("cert-at", None, None, "GREEN", None, False)])
    elif kind == "junk":
        path.write_bytes(b"\x00garbage" * 200)
    elif kind == "other-schema":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE sent (x)")
        db.commit()
        db.close()
    elif kind == "wrong-values":
        with H.Holdings(path) as index:
            index._db.execute("INSERT INTO sent (uuid, fp, recipient, level, hidden, time) VALUES (?,?,?,?,?,?)",
                              (bytes.fromhex(UUID.replace("-", "")), None, "cert-at", "not a level", "x", 5))
            index._db.execute("INSERT INTO retractions VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (UUID, "erase", "event", 7, None, None, "t", "t", None, "routed"))
    elif kind == "directory":
        path.mkdir()
    return path


@hostile.hostile_settings(60)
@given(st.data())
def test_retract_and_status_on_hostile_files(scratch, data):
    folder = Path(tempfile.mkdtemp(dir=scratch))
    (folder / "etc").mkdir()
    runtime = folder / "etc" / "runtime.yaml"
    holdings = _holdings(folder, data.draw(st.sampled_from(["ok", "junk", "other-schema", "wrong-values",
                                                            "directory", "missing"])))
    doc = {"router": json.loads(json.dumps(ROUTER).replace("HOLDINGS", str(holdings)))}
    kind = data.draw(st.sampled_from(["ok", "yaml", "wrong-types", "lookalike-hub", "path"]))
    if kind == "yaml":
        runtime.write_bytes(hostile.yaml_hostile(data.draw(st.sampled_from(hostile.YAML_HOSTILE)), yaml.safe_dump(doc)))
    elif kind == "wrong-types":
        runtime.write_text(yaml.safe_dump(data.draw(hostile.wrong_types(doc))))
    elif kind == "lookalike-hub":
        doc["router"]["parameters"]["hub_id"] = data.draw(hostile.lookalike())
        runtime.write_text(yaml.safe_dump(doc, allow_unicode=True))
    elif kind == "ok":
        runtime.write_text(yaml.safe_dump(doc))
    else:
        runtime = data.draw(st.sampled_from([folder, folder / "missing.yaml"]))
    target = data.draw(st.sampled_from([["--event-uuid", UUID], ["--event-uuid", data.draw(hostile.lookalike())],
                                        ["--fingerprint", "ab" * 32]]))
    reason = data.draw(st.one_of(st.just("false positive"), st.text(max_size=30)))
    with hostile.guard():
        result = run_cli(["retract", *target, "--action", "withdraw", "--reason", reason, "--dry-run",
                          "--runtime", runtime])
    assert_clean(result, {0, 1, 2})
    with hostile.guard():
        status = run_cli(["retraction", "status", data.draw(st.sampled_from([UUID, str(uuid.uuid4()), "x"])),
                          "--runtime", runtime])
    assert_clean(status, {0, 1, 2})
    with hostile.guard():
        listing = run_cli(["retraction", "list", "--db", holdings])
    assert_clean(listing, {0, 2})
