"""Hostile input to `check`, `harmonization check|install` and `bundle verify|keygen`: documented exit
codes, the file (and field) named on stderr, never a traceback (issue 12, section 3).

Exit codes (docs/cli.md): 1 the input was read, checked and found bad; 2 usage or configuration, which
includes a file that cannot be read as YAML/JSON at all (missing, a directory, not UTF-8, an alias bomb,
a huge value, duplicate keys, nesting too deep).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.exchange_helpers import events, write_trust
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder import harmonization as h
from intelmq_crossborder.core import inputs
from intelmq_crossborder.runtime import instance as runner
from intelmq_crossborder.cli import main

EXE = str(Path(sys.executable).parent / "intelmq-crossborder")
FIXTURE = Path(__file__).parent / "fixtures" / "harmonization" / "intelmq-3.5.0-harmonization.conf"
COLLECTOR = "intelmq.bots.collectors.crossborder.exchange.collector"
TLP_EXPERT = "intelmq.bots.experts.crossborder.tlp.expert"

BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join(['*a%d' % (i - 1)] * 10)}]\n" for i in range(1, 10))

#: Text that cannot be read as YAML at all, and what the message says.
UNREADABLE_YAML = {
    "alias-bomb": (BOMB + "tlp-expert: *a9\n", "billion laughs"),
    "huge-string": ("tlp-expert:\n  module: " + "x" * (3 * 1024 * 1024) + "\n", "characters"),
    "duplicate-key": (f"tlp-expert:\n  module: {TLP_EXPERT}\ntlp-expert:\n  module: {TLP_EXPERT}\n", "duplicate key"),
    "huge-int": ("global: {n: " + "9" * 5000 + "}\n", "a number of 5000 characters"),
    "deep": ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nest"),
    "surrogate": ('a: "\\ud800"\n', "YAML"),
    "bad-timestamp": ("a: !!timestamp 2001-99-99\n", "YAML"),
    "python-tag": ("a: !!python/object/apply:os.system [id]\n", "YAML"),
}


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def run_exe(*argv, env=None):
    proc = subprocess.run([EXE, *argv], capture_output=True, timeout=120, env=env)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, err
    return proc.returncode, out, err


# --- check RUNTIME_YAML ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(UNREADABLE_YAML))
def test_check_unreadable_runtime_exits_2(tmp_path, capsys, name):
    text, needle = UNREADABLE_YAML[name]
    path = tmp_path / "runtime.yaml"
    path.write_text(text, "utf-8")
    started = time.monotonic()
    status, out, err = run_cli(capsys, "check", path)
    assert time.monotonic() - started < 10
    assert status == 2 and str(path) in err and needle in err, err
    assert "No errors found." not in out


def test_check_not_utf8_missing_and_directory_exit_2(tmp_path, capsys):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"tlp-expert:\n  module: caf\xe9\n")
    for path, needle in ((latin, "not UTF-8"), (tmp_path / "missing.yaml", "cannot read"),
                         (tmp_path, "directory")):
        status, _, err = run_cli(capsys, "check", path)
        assert status == 2 and str(path) in err and needle in err, err


@pytest.mark.parametrize("text, needle", [
    ("- a\n- b\n", "top level must be a mapping of bot ids, not a list"),
    ("just a string\n", "top level"),
    ("global: [a]\n", "field global: must be a mapping"),
    ("tlp-expert: [a]\n", "bot tlp-expert: must be a mapping with 'module', not a list"),
    ("tlp-expert: text\n", "bot tlp-expert: must be a mapping"),
    ("tlp-expert: {module: [a]}\n", "bot tlp-expert: field module: must be a string"),
    (f"tlp-expert: {{module: {TLP_EXPERT}, parameters: [a]}}\n", "bot tlp-expert: field parameters: must be a mapping"),
    (f"tlp-expert: {{module: {TLP_EXPERT}, parameters: {{default_tlp: [RED]}}}}\n", "bot tlp-expert"),
    (f"collector: {{module: {COLLECTOR}, parameters: {{hub_id: [fr-hub], trust_store: [a], inbox_dir: {{}}, "
     "events_per_report: true}}\n", "bot collector: Parameter hub_id"),
    (f"collector: {{module: {COLLECTOR}, parameters: {{hub_id: \"fr-hub\\n\", trust_store: /nonexistent, "
     "inbox_dir: /tmp}}\n", "Parameter hub_id must be a hub id"),
    ("7: {module: x}\n", "bot 7: the bot id must be a string"),
])
def test_check_wrong_types_exit_1_naming_file_and_field(tmp_path, capsys, text, needle):
    path = tmp_path / "runtime.yaml"
    path.write_text(text)
    status, _, err = run_cli(capsys, "check", path)
    assert status == 1 and f"error: {path}" in err and needle in err, err


def test_check_empty_runtime_is_fine(tmp_path, capsys):
    path = tmp_path / "runtime.yaml"
    path.write_text("")
    assert run_cli(capsys, "check", path)[:2] == (0, "No errors found.\n")


def test_check_collector_trust_store_problems_are_findings(tmp_path, capsys):
    """The exchange collector's check() reads the trust store with the hardened reader."""
    trust = tmp_path / "trust.yaml"
    trust.write_text(BOMB + "version: 1\npeers: *a9\n")
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump({"collector": {"module": COLLECTOR, "parameters": {
        "hub_id": "fr-hub", "trust_store": str(trust), "inbox_dir": str(tmp_path)}}}))
    status, _, err = run_cli(capsys, "check", path)
    assert status == 1 and "Parameter trust_store" in err and str(trust) in err and "billion laughs" in err


def test_check_harmonization_beside_the_runtime(tmp_path, capsys):
    path = tmp_path / "runtime.yaml"
    path.write_text("")
    (tmp_path / "harmonization.conf").write_text('{"event": {}, "event": {}}')
    status, _, err = run_cli(capsys, "check", path)
    assert status == 1 and "harmonization.conf" in err and "duplicate key" in err


def test_check_non_utf8_file_name(tmp_path):
    """A path that is not valid UTF-8 (lone surrogates once decoded) is printed escaped."""
    name = os.fsencode(tmp_path) + b"/run\xff.yaml"
    with open(name, "wb") as fh:
        fh.write(f"tlp-expert: {{module: {TLP_EXPERT}, parameters: {{default_tlp: BLUE}}}}\n".encode())
    status, _, err = run_exe("check", name)
    assert status == 1 and "run\\udcff.yaml" in err and "BLUE" in err
    status, _, err = run_exe("check", os.fsencode(tmp_path) + b"/missing\xff.yaml")
    assert status == 2 and "missing\\udcff.yaml" in err


# --- harmonization check FILE / install --target FILE ---------------------------------------------

def _harmonization(tmp_path, mutate):
    data = json.loads(FIXTURE.read_text())
    mutate(data)
    path = tmp_path / "harmonization.conf"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["event"].update({"source.ip\n": {"type": "IPAddress", "description": "x"}}), "invalid key"),
    (lambda d: d["event"].update({"Source.IP": {"type": "IPAddress", "description": "x"}}), "invalid key"),
    (lambda d: d["event"].update({"x.y": ["type", "String"]}), "definition must be an object"),
    (lambda d: d["event"]["source.ip"].update(type=["IPAddress"]), "is not an IntelMQ harmonization type"),
    (lambda d: d["event"]["source.ip"].update(regex=["a"]), "regex must be a string"),
    (lambda d: d["event"]["source.ip"].update(regex="(" * 100_000), "regex is longer than"),
    (lambda d: d["event"]["source.ip"].update(iregex="(" * 500 + ")" * 500), "event.source.ip"),
    (lambda d: d["event"]["source.ip"].update(length=True), "length must be a positive integer"),
    (lambda d: d["event"]["source.ip"].update(description=["x"]), "description is missing"),
    (lambda d: d.update(event=[]), "section 'event' must be an object"),
    (lambda d: d.update(events={}), "section 'events' is unknown"),
])
def test_harmonization_check_bad_content_exits_1(tmp_path, capsys, mutate, needle):
    path = _harmonization(tmp_path, mutate)
    status, _, err = run_cli(capsys, "harmonization", "check", "--structure-only", path)
    assert status == 1 and str(path) in err and needle in err, err


@pytest.mark.parametrize("content, needle", [
    (b'{"event": {}, "event": {}}', "duplicate key"),
    (b'{"event": {"a": {"length": ' + b"9" * 5000 + b"}}}", "number"),
    (b"[" * 5000 + b"]" * 5000, "nest"),
    (b'{"event": {"\\ud800": {}}}', "surrogate"),
    (b'{"event": {"caf\xe9": {}}}', "not UTF-8"),
    (b'{"event": ', "not valid JSON"),
    (b'{"event": {}, "report": {}} trailing', "extra data"),
])
def test_harmonization_unreadable_is_named(tmp_path, capsys, content, needle):
    path = tmp_path / "harmonization.conf"
    path.write_bytes(content)
    with pytest.raises(h.UnreadableHarmonization, match=needle):
        h.read(path)
    status, _, err = run_cli(capsys, "harmonization", "check", path)
    assert status in (1, 2) and str(path) in err and needle in err
    status, _, err = run_cli(capsys, "harmonization", "install", "--target", path)
    assert status == 2 and str(path) in err and needle in err
    assert path.read_bytes() == content and not list(tmp_path.glob("*.bak-*"))


def test_harmonization_check_unreadable_exits_2(tmp_path, capsys):
    status, _, err = run_cli(capsys, "harmonization", "check", tmp_path / "missing.conf")
    assert status == 2


def test_harmonization_check_missing_and_directory(tmp_path, capsys):
    for path, needle in ((tmp_path / "missing.conf", "cannot read"), (tmp_path, "directory")):
        status, _, err = run_cli(capsys, "harmonization", "check", path)
        assert status != 0 and str(path) in err and needle in err


def test_harmonization_install_target_problems_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for target, needle in ((tmp_path, "directory"), (blocker / "harmonization.conf", "cannot write")):
        status, _, err = run_cli(capsys, "harmonization", "install", "--target", target)
        assert status == 2 and needle in err and str(tmp_path) in err, err
    lists = tmp_path / "list.conf"
    lists.write_text('{"event": [], "report": {}}')
    status, _, err = run_cli(capsys, "harmonization", "install", "--target", lists)
    assert status == 2 and "section 'event' must be an object" in err


# --- bundle verify / keygen -----------------------------------------------------------------------

@pytest.fixture()
def signed(tmp_path):
    keys = {"de-hub": b.generate_private_key(), "fr-hub": b.generate_private_key()}
    trust = tmp_path / "trust.yaml"
    write_trust(trust, keys)
    return trust, b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(2)), keys


@pytest.mark.parametrize("content, needle", [
    (BOMB + "version: 1\npeers: *a9\n", "billion laughs"),
    ("version: true\npeers: {}\n", "field version"),
    ("- version: 1\n", "top level"),
    ("version: 1\npeers: [de-hub]\n", "field peers"),
    ("version: 1\nversion: 1\n", "duplicate key"),
    ("version: " + "9" * 5000 + "\n", "a number of 5000 characters"),
    ("version: 1\npeers:\n  \"de-hub\\n\": {keys: [{public_key: AAAA}]}\n", "hub id must match"),
])
def test_verify_bad_trust_store_exits_2(tmp_path, capsys, signed, content, needle):
    _, bundle_path, _ = signed
    trust = tmp_path / "bad-trust.yaml"
    trust.write_text(content)
    status, out, err = run_cli(capsys, "bundle", "verify", "--trust", trust, bundle_path)
    assert status == 2 and str(trust) in err and needle in err and out == "", err


def test_verify_trust_store_not_utf8_directory_missing(tmp_path, capsys, signed):
    _, bundle_path, _ = signed
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"version: 1\npeers: {d\xe9: {}}\n")
    for trust, needle in ((latin, "not UTF-8"), (tmp_path, "directory"), (tmp_path / "nope.yaml", "cannot read")):
        status, _, err = run_cli(capsys, "bundle", "verify", "--trust", trust, bundle_path)
        assert status == 2 and str(trust) in err and needle in err, err


def test_verify_bundle_path_problems(tmp_path, capsys, signed):
    trust, bundle_path, _ = signed
    for path, needle in ((tmp_path, "is a directory"), (tmp_path / "nope.xbundle", "no such file")):
        status, _, err = run_cli(capsys, "bundle", "verify", "--trust", trust, path)
        assert status == 2 and str(path) in err and needle in err
    junk = tmp_path / "junk.xbundle"
    junk.write_bytes(b"\x00" * 3000)
    status, _, err = run_cli(capsys, "bundle", "verify", "--trust", trust, junk)
    assert status == 1 and err.startswith(f"BAD {junk}: malformed: ")


def test_verify_recipient_must_be_a_hub_id(capsys, signed):
    trust, bundle_path, _ = signed
    status, _, err = run_cli(capsys, "bundle", "verify", "--trust", trust, "--recipient", "fr-hub\n", bundle_path)
    assert status == 2 and "--recipient" in err
    assert run_cli(capsys, "bundle", "verify", "--trust", trust, "--recipient", "fr-hub", bundle_path)[0] == 0


def test_verify_non_utf8_bundle_name_prints_escaped(tmp_path, signed):
    trust, bundle_path, _ = signed
    odd = os.fsencode(tmp_path) + b"/odd\xff.xbundle"
    os.rename(bundle_path, odd)
    status, out, err = run_exe("bundle", "verify", "--trust", str(trust), odd)
    assert status == 0 and out.startswith(f"OK {tmp_path}/odd\\udcff.xbundle: "), err


def test_keygen_bad_arguments_exit_2(tmp_path, capsys):
    key = tmp_path / "k.pem"
    for argv, needle in ((["--hub", "de-hub\n"], "--hub"), (["--hub", "DE HUB"], "--hub"),
                         (["--country", "DE\n"], "--country"), (["--country", "de"], "--country")):
        status, out, err = run_cli(capsys, "bundle", "keygen", "--private-key", key, *argv)
        assert status == 2 and needle in err and out == ""
        assert not key.exists()
    for target, needle in ((tmp_path, "is a directory"), (tmp_path / "missing-dir" / "k.pem", "cannot write")):
        status, _, err = run_cli(capsys, "bundle", "keygen", "--private-key", target)
        assert status == 2 and needle in err and str(target) in err


def test_keygen_passphrase_env(tmp_path, capsys, monkeypatch):
    key = tmp_path / "k.pem"
    monkeypatch.setenv("XB_EMPTY", "")
    status, _, err = run_cli(capsys, "bundle", "keygen", "--private-key", key, "--passphrase-env", "XB_EMPTY")
    assert status == 2 and "XB_EMPTY" in err and "empty" in err and not key.exists()
    status, _, err = run_cli(capsys, "bundle", "keygen", "--private-key", key, "--passphrase-env", "")
    assert status == 2 and not key.exists()
    env = {**os.environ}
    env_b = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_b[b"XB_PASS"] = b"caf\xe9-not-utf8"
    proc = subprocess.run([EXE, "bundle", "keygen", "--private-key", str(key), "--passphrase-env", "XB_PASS"],
                          capture_output=True, timeout=120, env=env_b)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr
    assert b.load_private_key(key, b"caf\xe9-not-utf8")


def test_keygen_printed_entry_is_a_valid_trust_store(tmp_path, capsys):
    status, out, _ = run_cli(capsys, "bundle", "keygen", "--private-key", tmp_path / "k.pem", "--hub", "de-hub",
                             "--country", "DE")
    assert status == 0
    path = tmp_path / "trust.yaml"
    path.write_text("version: 1\npeers:\n" + "".join("  " + line + "\n" for line in out.splitlines()
                                                     if not line.startswith("#")))
    assert b.TrustStore.from_file(path).country_of("de-hub") == "DE"


def test_load_private_key_errors(tmp_path):
    for path, needle in ((tmp_path, "directory"), (tmp_path / "nope.pem", "cannot read")):
        with pytest.raises(b.BundleError, match=needle):
            b.load_private_key(path)
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (b.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(b.BundleError, match="larger than"):
        b.load_private_key(big)
    rsa = tmp_path / "rsa.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    rsa.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(b.BundleError, match="not an Ed25519 key"):
        b.load_private_key(rsa)


# --- runner: runtime files and dumps --------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("- a\n", "top level"),
    ("bot: [a]\n", "field bot"),
    ("bot: {module: x, parameters: [a]}\n", "field bot.parameters"),
    (BOMB, "billion laughs"),
    ("a: " + "9" * 5000 + "\n", "a number of 5000 characters"),
    ("a: 1\na: 2\n", "duplicate key"),
])
def test_load_runtime_names_file_and_field(tmp_path, text, needle):
    path = tmp_path / "runtime.yaml"
    path.write_text(text)
    with pytest.raises(inputs.InputError, match=needle) as info:
        runner.load_runtime(path, tmp_path)
    assert str(path) in str(info.value)


def test_dumps_with_wrong_shape(tmp_path):
    inst = runner.IntelMQInstance(tmp_path, {})
    inst.log_dir.mkdir(parents=True)
    (inst.log_dir / "bot.dump").write_text('{"a": {"x": 1}}')
    assert inst.dumps() == {"bot": [{"x": 1}]}
    for text, needle in (("[1]", "must be a JSON object"), ('{"a": 1, "a": 2}', "duplicate key"),
                         ("{", "not valid JSON")):
        (inst.log_dir / "bot.dump").write_text(text)
        with pytest.raises(runner.PipelineError, match=needle):
            inst.dumps()


def test_dumps_waits_for_a_bot_rewriting_its_dump(tmp_path, monkeypatch):
    """IntelMQ rewrites a dump in place under an exclusive flock (and creates it empty before locking):
    a reader polling while a bot dumps sees the finished file, not a half-written one (a CI failure)."""
    import fcntl
    import threading
    inst = runner.IntelMQInstance(tmp_path, {})
    inst.log_dir.mkdir(parents=True)
    path = inst.log_dir / "bot.dump"
    path.write_text("")                               # created by the writer, not yet locked
    locked, result = threading.Event(), {}

    def writer():
        with open(path, "r+") as fp:
            fcntl.flock(fp, fcntl.LOCK_EX)
            locked.set()
            fp.write('{"a": ')                        # half-written while the reader waits
            fp.flush()
            time.sleep(0.4)
            fp.write('{"x": 1}}')
            fp.flush()
            fcntl.flock(fp, fcntl.LOCK_UN)

    def reader():
        result["dumps"] = inst.dumps()
    read = threading.Thread(target=reader)
    read.start()                                      # sees the empty file and reads again
    time.sleep(0.2)
    write = threading.Thread(target=writer)
    write.start()
    write.join()
    read.join()
    assert result["dumps"] == {"bot": [{"x": 1}]}
    path.write_text("")                               # empty for good: named after the wait
    monkeypatch.setattr(runner, "_read_dump_locked",
                        lambda p, wait=5.0, real=runner._read_dump_locked: real(p, wait=0.1))
    with pytest.raises(runner.PipelineError, match="bot.dump"):
        inst.dumps()
