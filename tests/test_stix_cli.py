"""``intelmq-crossborder convert stix``: one JSON line per event, summary on stderr, exit 1 after
all files when one was invalid (file and JSON path named), exit 2 for unreadable files."""
import json
from pathlib import Path

from tests.clirun import run

FIX = Path(__file__).parent / "fixtures" / "stix"


def test_real_bundles_of_three_publishers_both_versions(capsys):
    files = [FIX / "talos-lazarus-magicrat.json", FIX / "extra/feeds2stix/ipsum_level_8.json",
             FIX / "extra/unit42/2024-02-21-AsyncRAT.json"]
    status, out, err = run(["convert", "stix", *map(str, files)], capsys)
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 22 + 58 + 19
    assert {e["extra.stix_spec_version"] for e in events} == {"2.0", "2.1"}
    assert {e["sharing.tlp"] for e in events} == {"GREEN", "CLEAR", "AMBER"}   # AMBER: the default for Unit 42
    assert all("raw" not in e for e in events)
    for f in files:
        assert f"{f}: " in err and "event(s)" in err


def test_default_tlp_none_and_classification_override(capsys):
    status, out, err = run(["convert", "stix", str(FIX / "extra/unit42/2024-02-21-AsyncRAT.json"),
                            "--default-tlp", "none", "--type-classification", "malicious-activity=c2-server"], capsys)
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert all("sharing.tlp" not in e for e in events)
    assert {e["classification.type"] for e in events} == {"c2-server"}


def test_invalid_objects_exit_1_after_all_files_naming_file_and_path(capsys):
    bad = FIX / "malformed/unknown-tlp-marking-id.json"
    good = FIX / "using-marking-definitions.json"
    status, out, err = run(["convert", "stix", str(bad), str(good)], capsys)
    assert status == 1
    assert f"{bad}: field objects[1].object_marking_refs[0]:" in err
    ips = [json.loads(line)["source.ip"] for line in out.splitlines()]
    assert ips == ["198.51.100.2", "10.0.0.0"]


def test_not_stix_and_hostile_files_exit_1(capsys):
    for name, needle in (("not-json.json", "not valid JSON"), ("duplicate-keys.json", "duplicate key"),
                         ("not-utf8.json", "not UTF-8"), ("wrong-top-level.json", "not STIX")):
        status, out, err = run(["convert", "stix", str(FIX / "malformed" / name)], capsys)
        assert status == 1 and needle in err and name in err and out == ""


def test_unreadable_files_exit_2_others_still_converted(capsys, tmp_path):
    status, out, err = run(["convert", "stix", str(tmp_path / "missing.json"), str(tmp_path),
                            str(FIX / "using-marking-definitions.json")], capsys)
    assert status == 2
    assert "no such file" in err and "is a directory" in err
    assert len(out.splitlines()) == 1


def test_usage_errors_exit_2(capsys):
    assert run(["convert", "stix", str(FIX / "tlp2-clear.json"), "--default-tlp", "PURPLE"], capsys)[0] == 2
    assert run(["convert", "stix", str(FIX / "tlp2-clear.json"), "--type-classification", "x"], capsys)[0] == 2
    assert run(["convert", "stix", str(FIX / "tlp2-clear.json"), "--default-classification", "nope"], capsys)[0] == 2


def test_hub_id_gives_uuids_and_prints_a_revoked_objects_retractions(capsys):
    from intelmq_crossborder.formats.stix.parse import event_uuid
    from intelmq_crossborder.policy.retraction import Retraction

    status, out, err = run(["convert", "stix", "--hub-id", "fi-hub", str(FIX / "malformed/revoked-and-unconvertible.json")],
                           capsys)
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    (ret,) = [x for x in lines if "retraction.id" in x]
    (event,) = [x for x in lines if "retraction.id" not in x]
    notice = Retraction.from_event(ret)
    assert notice.action == "withdraw" and notice.originator == "fi-hub"
    assert notice.target_event_uuid == event_uuid("fi-hub", "indicator--00000001-0000-4000-8000-000000000000", 0)
    assert "198.51.100.1" not in json.dumps(ret)
    assert event["provenance.event_uuid"] == event_uuid("fi-hub", "indicator--00000005-0000-4000-8000-000000000000", 0)
    assert "1 event(s), 1 revoked, 1 retraction(s), 0 refused" in err


def test_without_hub_id_revoked_objects_are_counted_only(capsys):
    status, out, err = run(["convert", "stix", str(FIX / "malformed/revoked-and-unconvertible.json")], capsys)
    assert status == 0
    assert all("retraction.id" not in json.loads(line) and "provenance.event_uuid" not in json.loads(line)
               for line in out.splitlines())
    assert "1 revoked, 0 retraction(s)" in err


def test_bad_hub_id_is_a_usage_error(capsys):
    for hub in ("fi hub", "FI-HUB", "fi-h\u0443b", " fi-hub"):
        status, out, err = run(["convert", "stix", "--hub-id", hub, str(FIX / "tlp2-clear.json")], capsys)
        assert status == 2 and "--hub-id" in err and out == ""


def test_revoked_object_that_cannot_be_named_exits_1_naming_file_and_path(capsys, tmp_path):
    data = json.loads((FIX / "malformed/revoked-and-unconvertible.json").read_text())
    data["objects"][0]["id"] = "indicator--00000001-0000-4000-8000-00000000000\u0430"
    bad = tmp_path / "revoked-lookalike-id.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    status, out, err = run(["convert", "stix", "--hub-id", "fi-hub", str(bad)], capsys)
    assert status == 1
    assert f"{bad}: field objects[0].id: a revoked indicator needs a STIX id" in err
    assert [json.loads(line)["source.ip"] for line in out.splitlines()] == ["198.51.100.5"]
    assert "1 refused" in err
