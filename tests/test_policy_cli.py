"""Tests of ``intelmq-crossborder policy check`` (the contract of issue 3, section 3)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from intelmq_crossborder import cli
from intelmq_crossborder.runtime.instance import PIPELINES_DIR
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
    assert f"{events}:1: bad event line skipped: not valid JSON" in err
    assert f"{events}:3: bad event line skipped: field source.ip: " in err
    assert "not an ip" not in err, "a refused value is not quoted (it may be an address or an account)"


def test_strict_stops_with_exit_2(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [
        {"classification.type": "scanner", "sharing.tlp": "CLEAR"},
        {"bogus.field": 1},
        {"classification.type": "scanner", "sharing.tlp": "CLEAR"},
    ])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events), "--strict")
    assert status == 2
    assert {o["event"] for o in out} == {0}
    assert f"{events}:2: bad event line: field bogus.field: not a field of the harmonization" in err


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
    from intelmq_crossborder.policy.agreements import KINDS, load_agreements
    loaded = load_agreements(PIPELINES_DIR / "agreements")
    assert {a.kind for a in loaded.values()} == set(KINDS)


def test_shipped_sharing_runtime_config_is_consistent(tmp_path):
    from intelmq_crossborder.bots.experts.provenance.expert import CrossBorderProvenanceExpertBot
    from intelmq_crossborder.bots.experts.sharing_router.expert import CrossBorderSharingRouterExpertBot
    from intelmq_crossborder.runtime.instance import load_runtime
    runtime = load_runtime(PIPELINES_DIR / "sharing" / "runtime.yaml", tmp_path)
    router = runtime["sharing-router"]["parameters"]
    assert CrossBorderSharingRouterExpertBot.check(router) is None or all(
        level != "error" for level, _ in CrossBorderSharingRouterExpertBot.check(router))
    assert CrossBorderProvenanceExpertBot.check(runtime["provenance-out"]["parameters"]) is None
    for recipient, queues in router["destination_queues"].items():
        assert runtime[f"{recipient}-output"]["parameters"]["file"].endswith(f"{recipient}.jsonl")
        assert queues == [f"{recipient}-output-queue"]


# --- hostile input lines (issue 12, section 3): each is one bad line, the run goes on ---------------

GOOD = {"classification.type": "scanner", "sharing.tlp": "CLEAR"}
HOSTILE_LINES = {
    "duplicate key": b'{"classification.type": "scanner", "sharing.tlp": "RED", "sharing.tlp": "CLEAR"}',
    "huge number": b'{"classification.type": "scanner", "extra.n": ' + b"9" * 5000 + b"}",
    "deep nesting": b'{"extra.x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "lone surrogate": b'{"classification.type": "scanner", "extra.x": "\\ud800"}',
    "not UTF-8": b'{"classification.type": "scanner", "extra.x": "\xff\xfe"}',
    "a list": b'[{"classification.type": "scanner"}]',
    "a string": b'"classification.type"',
    "a number": b"12",
    "null": b"null",
    "NaN": b'{"extra.x": NaN}',
    "not an Event": b'{"__type": "Report", "raw": ""}',
    "wrong type for a field": b'{"classification.type": ["scanner"]}',
}


def write_bytes_events(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE_LINES))
def test_hostile_line_is_one_bad_line(tmp_path, agreements, capsys, kind):
    good = json.dumps(GOOD).encode()
    events = write_bytes_events(tmp_path, [good, HOSTILE_LINES[kind], good])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 1, err
    assert sorted({o["event"] for o in out}) == [0, 2], "the lines after the bad one are still checked"
    assert f"{events}:2: bad event line skipped: " in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("kind", sorted(HOSTILE_LINES))
def test_hostile_line_strict_exits_2(tmp_path, agreements, capsys, kind):
    good = json.dumps(GOOD).encode()
    events = write_bytes_events(tmp_path, [good, HOSTILE_LINES[kind], good])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events), "--strict")
    assert status == 2
    assert {o["event"] for o in out} == {0}
    assert f"error: {events}:2: bad event line: " in err and "Traceback" not in err


def test_bad_line_names_the_field(tmp_path, agreements, capsys):
    nested = b'{"extra.x": ' + b"[" * 200 + b"]" * 200 + b"}"      # deeper than 128, readable by json
    events = write_bytes_events(tmp_path, [nested, HOSTILE_LINES["lone surrogate"],
                                           HOSTILE_LINES["wrong type for a field"]])
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 1
    lines = err.splitlines()
    assert "field extra.x" in lines[0] and "nested more than" in lines[0]
    assert "field extra.x" in lines[1] and "surrogate" in lines[1]
    assert "field classification.type" in lines[2]


@pytest.mark.parametrize("event, field", [
    ({"classification.type": "scanner", "extra.misp_tags": "tlp:r\u0435d"}, "extra.misp_tags[0]"),    # Cyrillic e
    ({"classification.type": "scanner", "extra.tlp": ["RED"]}, "extra.tlp"),
    ({"classification.type": "scanner", "extra.tags": [{"label": "tlp:red"}]}, "extra.tags[0]"),
    ({"classification.type": "scanner", "extra.tlp_level": "RED"}, "extra.tlp_level"),
    ({"classification.type": "scanner", "extra.misp": {"Tag": [{"name": "tlp\u200b:red"}]}}, "extra.misp.Tag[0].name"),
])
def test_unreadable_label_is_denied_for_every_recipient_with_the_field(tmp_path, agreements, capsys, event, field):
    events = write_events(tmp_path, [event, GOOD])
    status, out, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 1, err
    first = [o for o in out if o["event"] == 0]
    assert [o["recipient"] for o in first] == ["hub-soc", "isac"]
    for o in first:
        assert o["allowed"] is False and o["event_out"] is None
        assert o["reasons"][0].startswith("tlp-unreadable: ") and f"field {field}" in o["reasons"][0], o
    assert f"{events}:1: event refused for every recipient: tlp-unreadable: " in err
    assert [o["allowed"] for o in out if o["event"] == 1] == [True, True], "the next event is still decided"


def test_agreements_path_that_is_a_file_exits_2(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [GOOD])
    status, out, err = run(capsys, "--agreements", str(agreements / "isac.yaml"), "--events", str(events))
    assert status == 2 and out == []
    assert f"{agreements / 'isac.yaml'}: not a directory of agreements" in err and "Traceback" not in err


def test_missing_agreements_dir_exits_2(tmp_path, capsys):
    events = write_events(tmp_path, [GOOD])
    status, out, err = run(capsys, "--agreements", str(tmp_path / "none"), "--events", str(events))
    assert status == 2 and out == [] and f"{tmp_path / 'none'}: no such directory" in err


def test_agreements_dir_without_agreements_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    events = write_events(tmp_path, [GOOD])
    status, out, err = run(capsys, "--agreements", str(tmp_path / "empty"), "--events", str(events))
    assert status == 2 and out == [] and str(tmp_path / "empty") in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_agreement_exits_2(tmp_path, agreements, capsys):
    (agreements / "isac.yaml").chmod(0)
    events = write_events(tmp_path, [GOOD])
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 2 and "isac.yaml" in err


def test_agreement_not_utf8_or_alias_bomb_exits_2(tmp_path, agreements, capsys):
    events = write_events(tmp_path, [GOOD])
    (agreements / "isac.yaml").write_bytes(b"recipient: \xff\xfe\n")
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 2 and "isac.yaml" in err and "Traceback" not in err and "internal error" not in err
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (agreements / "isac.yaml").write_text(bomb)
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(events))
    assert status == 2 and "isac.yaml" in err and "internal error" not in err


def test_events_path_is_a_directory_exits_2(tmp_path, agreements, capsys):
    status, _, err = run(capsys, "--agreements", str(agreements), "--events", str(tmp_path))
    assert status == 2 and f"{tmp_path}: is a directory" in err


# --- the last-resort guard of cli.main ----------------------------------------------------------

def _raising(exc):
    def func(args):
        raise exc
    return func


def test_internal_error_is_one_line_and_exit_2(capsys, monkeypatch):
    from intelmq_crossborder.cli import policy as policy_cli
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(policy_cli, "check", _raising(ZeroDivisionError("boom\nsecond line")))
    assert cli.main(["policy", "check", "--agreements", "x", "--events", "y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("intelmq-crossborder: error: internal error in policy check: ZeroDivisionError: "
                          "boom second line")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_internal_error_traceback_with_debug_variable(capsys, monkeypatch):
    from intelmq_crossborder.cli import policy as policy_cli
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    monkeypatch.setattr(policy_cli, "check", _raising(KeyError("k")))
    assert cli.main(["policy", "check", "--agreements", "x", "--events", "y"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error in policy check: KeyError" in err


def test_usage_error_keeps_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["policy", "check", "--no-such-option"])
    assert info.value.code == 2


def test_keyboard_interrupt_and_broken_pipe(capsys, monkeypatch):
    from intelmq_crossborder.cli import policy as policy_cli
    monkeypatch.setattr(policy_cli, "check", _raising(KeyboardInterrupt()))
    assert cli.main(["policy", "check", "--agreements", "x", "--events", "y"]) == cli.INTERRUPTED
    assert capsys.readouterr().err == "intelmq-crossborder: interrupted\n"
    monkeypatch.setattr(policy_cli, "check", _raising(BrokenPipeError()))
    assert cli.main(["policy", "check", "--agreements", "x", "--events", "y"]) == 1
    assert capsys.readouterr().err == ""


def test_broken_pipe_in_a_real_process_is_quiet(tmp_path, agreements):
    events = write_events(tmp_path, [GOOD] * 20000)
    exe = Path(sys.executable).parent / "intelmq-crossborder"
    proc = subprocess.Popen([str(exe), "policy", "check", "--agreements", str(agreements), "--events", str(events)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()          # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "Exception ignored" not in err and "internal error" not in err, err
