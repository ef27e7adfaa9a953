"""Tests of ``intelmq-crossborder policy check`` (the contract of issue 3, section 3)."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from intelmq_crossborder import cli

REPO = Path(__file__).resolve().parent.parent
SAME_ORG = """\
    recipient: hub-soc
    name: Hub SOC
    kind: csirt
    country: AT
    relation: same-organisation
    max_tlp: AMBER+STRICT
    disclose_source: true
    """
COMMUNITY = """\
    recipient: isac
    name: An ISAC
    kind: isac
    country: EU
    relation: community
    max_tlp: GREEN
    """


@pytest.fixture
def agreements(tmp_path):
    d = tmp_path / "agreements"
    d.mkdir()
    (d / "soc.yaml").write_text(textwrap.dedent(SAME_ORG))
    (d / "isac.yaml").write_text(textwrap.dedent(COMMUNITY))
    return d


def write_events(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def run(capsys, *argv):
    status = cli.main(["policy", "check", *argv])
    captured = capsys.readouterr()
    return status, [json.loads(l) for l in captured.out.splitlines()], captured.err


def test_one_line_per_event_and_recipient(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [
        {"classification.type": "scanner", "source.ip": "192.0.2.1", "sharing.tlp": "AMBER", "feed.name": "F"},
        {"classification.type": "scanner", "source.ip": "192.0.2.2", "tlp": "green"},
    ])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 0 and err == ""
    assert [(o["event"], o["recipient"], o["allowed"]) for o in out] == [
        (0, "hub-soc", True), (0, "isac", False), (1, "hub-soc", True), (1, "isac", True)]
    assert set(out[0]) == {"event", "recipient", "allowed", "reasons", "event_out"}
    assert out[0]["event_out"] == {"classification.type": "scanner", "source.ip": "192.0.2.1",
                                   "sharing.tlp": "AMBER", "feed.name": "F", "sharing.agreement": "hub-soc"}
    assert out[1]["event_out"] is None and out[1]["reasons"][0].startswith("tlp-above-ceiling:")
    assert out[3]["event_out"]["sharing.tlp"] == "GREEN" and out[3]["event_out"]["tlp"] == "GREEN"


def test_bad_line_reported_and_skipped(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [
        "{not json",
        {"classification.type": "scanner", "source.ip": "192.0.2.1", "sharing.tlp": "CLEAR"},
        {"source.ip": "not an ip"},
        "",
        {"classification.type": "scanner", "sharing.tlp": "GREEN"},
    ])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 1
    assert sorted({o["event"] for o in out}) == [1, 4]     # 0-based line indexes
    assert f"{events}:1: bad event line skipped: not JSON" in err
    assert f"{events}:3: bad event line skipped: invalid value" in err and "source.ip" in err


def test_strict_stops_with_exit_2(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [
        {"classification.type": "scanner", "sharing.tlp": "CLEAR"},
        {"bogus.field": 1},
        {"classification.type": "scanner", "sharing.tlp": "CLEAR"},
    ])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events), "--strict")
    assert status == 2
    assert {o["event"] for o in out} == {0}
    assert f"{events}:2: bad event line: invalid field" in err


def test_bad_agreement_exits_2_naming_file_and_field(tmp_path, agreements, capsys):
    (agreements / "isac.yaml").write_text(textwrap.dedent(COMMUNITY).replace("max_tlp: GREEN", "max_tlp: RED"))
    events = write_events(tmp_path, [{"classification.type": "scanner"}])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 2 and out == []
    assert f"bad agreement: {agreements / 'isac.yaml'}, field max_tlp: TLP:RED is never forwarded" in err


def test_missing_events_file_exits_2(tmp_path, agreements, capsys):
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(tmp_path / "nope.jsonl"))
    assert status == 2 and "nope.jsonl" in err


def test_pseudonymising_agreement_uses_key_from_environment(tmp_path, agreements, capsys, monkeypatch):
    (agreements / "isac.yaml").write_text(textwrap.dedent(COMMUNITY) + "pseudonymise_fields: [source.ip]\n")
    events = write_events(tmp_path, [{"classification.type": "scanner", "source.ip": "192.0.2.1",
                                      "sharing.tlp": "GREEN"}])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert out[1]["allowed"] is False and out[1]["reasons"][0].startswith("key-missing:")
    assert "CROSSBORDER_HMAC_KEY is not set" in err
    monkeypatch.setenv("CROSSBORDER_HMAC_KEY", "cli-test-key")
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 0 and out[1]["allowed"] and out[1]["event_out"]["source.ip"].startswith("fd")
    assert "cli-test-key" not in err


def test_help_and_real_entry_point(agreements, tmp_path):
    exe = Path(sys.executable).parent / "intelmq-crossborder"
    proc = subprocess.run([str(exe), "policy", "check", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--strict" in proc.stdout
    events = write_events(tmp_path, [{"classification.type": "scanner", "sharing.tlp": "CLEAR"}])
    proc = subprocess.run([str(exe), "policy", "check", "--agreements", str(agreements), "--events", str(events)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2


def test_shipped_example_agreements_load():
    from intelmq_crossborder import policy
    loaded = policy.load_agreements(REPO / "runtime-configs" / "agreements")
    assert {a.kind for a in loaded.values()} == set(policy.KINDS)


def test_shipped_sharing_runtime_config_is_consistent(tmp_path):
    from intelmq_crossborder.bots.experts.provenance.expert import CrossBorderProvenanceExpertBot
    from intelmq_crossborder.bots.experts.sharing_router.expert import CrossBorderSharingRouterExpertBot
    from intelmq_crossborder.runner import load_runtime
    runtime = load_runtime(REPO / "runtime-configs" / "sharing" / "runtime.yaml", tmp_path)
    router = runtime["sharing-router"]["parameters"]
    assert CrossBorderSharingRouterExpertBot.check(router) is None or all(
        level != "error" for level, _ in CrossBorderSharingRouterExpertBot.check(router))
    assert CrossBorderProvenanceExpertBot.check(runtime["provenance-out"]["parameters"]) is None
    for recipient, queues in router["destination_queues"].items():
        assert runtime[f"{recipient}-output"]["parameters"]["file"].endswith(f"{recipient}.jsonl")
        assert queues == [f"{recipient}-output-queue"]
