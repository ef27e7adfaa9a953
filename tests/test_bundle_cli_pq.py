"""``intelmq-crossborder bundle keygen --hybrid / --rotate``, ``bundle seal`` and ``bundle verify``
with hybrid keys and encryption (issue 18, docs/cli.md)."""
import stat

import pytest
import yaml

from tests.clirun import run

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.formats import bundle_crypto as bc


def cli(capsys, *argv):
    return run([str(a) for a in argv], capsys)


@pytest.fixture
def hubs(tmp_path, capsys):
    """de-hub and fr-hub with hybrid key sets; trust.yaml lists both (every key of each)."""
    for hub, cc in (("de-hub", "DE"), ("fr-hub", "FR")):
        status, out, err = cli(capsys, "bundle", "keygen", "--private-key", tmp_path / f"{hub}.pem", "--hybrid",
                               "--decryption-key", tmp_path / f"{hub}-dec.pem", "--hub", hub, "--country", cc,
                               "--trust-store", tmp_path / f"{hub}-entry.yaml")
        assert status == 0, err
    assert cli(capsys, "bundle", "trust-add", "--trust", tmp_path / "trust.yaml", "--from",
               tmp_path / "de-hub-entry.yaml")[0] == 0
    assert cli(capsys, "bundle", "trust-add", "--trust", tmp_path / "trust.yaml", "--from",
               tmp_path / "fr-hub-entry.yaml")[0] == 0
    (tmp_path / "events.jsonl").write_text(
        '{"source.ip": "192.0.2.1", "sharing.tlp": "GREEN", "classification.type": "scanner"}\n'
        '{"source.ip": "192.0.2.2", "sharing.tlp": "RED"}\n'
        '\n'
        '{"source.ip": "192.0.2.3", "sharing.tlp": "AMBER", "feed.name": "Secret",'
        ' "sharing.do_not_disclose_source": true}\n')
    (tmp_path / "out").mkdir()
    return tmp_path


def test_keygen_hybrid_files_and_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XB_KEY_PASS", "pass phrase")
    status, out, err = cli(capsys, "bundle", "keygen", "--private-key", tmp_path / "k.pem", "--hybrid",
                           "--decryption-key", tmp_path / "d.pem", "--hub", "de-hub", "--country", "DE",
                           "--passphrase-env", "XB_KEY_PASS")
    assert status == 0, err
    for name in ("k.pem", "d.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / name).read_bytes()
    keys = b.load_signing_keys(tmp_path / "k.pem", b"pass phrase")
    dec = b.load_decryption_keys(tmp_path / "d.pem", b"pass phrase")
    assert keys.algorithms == ("ed25519", "ml-dsa-65") and "PRIVATE" not in out
    # the printed entry is complete: pasted under peers it is a valid trust store with all three keys
    entry = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    store = b.TrustStore.from_dict({"version": 1, "peers": entry})
    assert store.required_algorithms("de-hub") == ("ed25519", "ml-dsa-65")
    assert set(store.peers["de-hub"]["keys"]) == set(keys.key_ids()) | set(dec.keys)
    assert store.encryption_key("de-hub").key_id in out


@pytest.mark.parametrize("argv, needle", [
    (["--hybrid"], "--decryption-key"),
    (["--decryption-key", "{k}"], "different files"),
    (["--rotate", "ml-dsa-65"], "--from"),
    (["--from", "{k}"], "--rotate"),
])
def test_keygen_usage_errors(tmp_path, capsys, argv, needle):
    argv = [a.format(k=tmp_path / "k.pem") for a in argv]
    status, _, err = cli(capsys, "bundle", "keygen", "--private-key", tmp_path / "k.pem", *argv)
    assert status == 2 and needle in err and not (tmp_path / "k.pem").exists()


def test_seal_and_verify_encrypted(hubs, capsys):
    status, out, err = cli(capsys, "bundle", "seal", "--key", hubs / "de-hub.pem", "--sender", "de-hub",
                           "--recipient", "fr-hub", "--trust", hubs / "trust.yaml", "--outbox", hubs / "out",
                           "--sequence", "4", hubs / "events.jsonl")
    assert status == 0, err
    assert "format 2.0, signed ed25519 + ml-dsa-65, encrypted to mlkem768-x25519:" in out
    assert "1 event(s) not bundled" in out and "line 2: sharing.tlp: TLP:RED" in err
    (path,) = (hubs / "out").glob("*.xbundle")
    assert "_0000000004_" in path.name
    status, out, _ = cli(capsys, "bundle", "verify", "--trust", hubs / "trust.yaml", "--recipient", "fr-hub", path)
    assert status == 0 and "verified: ed25519 (ed25519:" in out and "ml-dsa-65 (ml-dsa-65:" in out
    assert "NOT decrypted (no --decryption-key)" in out
    status, out, _ = cli(capsys, "bundle", "verify", "--trust", hubs / "trust.yaml", "--recipient", "fr-hub",
                         "--decryption-key", hubs / "fr-hub-dec.pem", path)
    assert status == 0 and ", decrypted, events counted" in out and "2 events" in out
    status, _, err = cli(capsys, "bundle", "verify", "--trust", hubs / "trust.yaml", "--recipient", "fr-hub",
                         "--decryption-key", hubs / "de-hub-dec.pem", path)
    assert status == 1 and "BAD" in err and "wrong-encryption-key" in err
    # the same code as the exchange output: the hidden source is gone, the label is the effective one
    with b.open_bundle(path, b.TrustStore.from_file(hubs / "trust.yaml"), "fr-hub",
                       b.load_decryption_keys(hubs / "fr-hub-dec.pem")) as opened:
        opened.verify_data()
        events = [e for _, e in b.iter_events(opened)]
    assert [e["source.ip"] for e in events] == ["192.0.2.1", "192.0.2.3"]
    assert "feed.name" not in events[1] and events[1]["sharing.tlp"] == "AMBER"


def test_seal_in_clear_for_a_peer_without_key(hubs, capsys):
    trust = yaml.safe_load((hubs / "trust.yaml").read_text())
    trust["peers"]["fr-hub"]["keys"] = [k for k in trust["peers"]["fr-hub"]["keys"]
                                        if k["algorithm"] != "mlkem768-x25519"]
    (hubs / "nokey.yaml").write_text(yaml.safe_dump(trust))
    argv = ["bundle", "seal", "--key", hubs / "de-hub.pem", "--sender", "de-hub", "--recipient", "fr-hub",
            "--trust", hubs / "nokey.yaml", "--outbox", hubs / "out", hubs / "events.jsonl"]
    status, _, err = cli(capsys, *argv, "--require-encryption")
    assert status == 2 and "not sealed in clear" in err and not list((hubs / "out").glob("*"))
    status, out, _ = cli(capsys, *argv)
    assert status == 0 and "format 1.1" in out and "in clear (fr-hub announces no encryption key" in out
    (path,) = (hubs / "out").glob("*.xbundle")
    status, out, _ = cli(capsys, "bundle", "verify", "--trust", hubs / "nokey.yaml", path)
    assert status == 0 and "; data in clear" in out


@pytest.mark.parametrize("content, status, needle", [
    ('{"sharing.tlp": "GREEN"}\n[1]\n', 1, ":2: not a JSON object but a list"),
    ('{"sharing.tlp": "GREEN", "a": 1, "a": 2}\n', 1, ":1:"),
    (b'{"sharing.tlp": "GREEN"}\n\xff\xfe\n', 1, ":2:"),
])
def test_seal_bad_input_writes_nothing(hubs, capsys, content, status, needle):
    events = hubs / "bad.jsonl"
    events.write_bytes(content if isinstance(content, bytes) else content.encode())
    got, _, err = cli(capsys, "bundle", "seal", "--key", hubs / "de-hub.pem", "--sender", "de-hub", "--recipient",
                      "fr-hub", "--trust", hubs / "trust.yaml", "--outbox", hubs / "out", events)
    assert got == status and needle in err, err
    assert not list((hubs / "out").iterdir())                # not even a temporary file


@pytest.mark.parametrize("extra, needle", [
    (["--recipient", "de-hub"], "same hub"),
    (["--recipient", "FR-hub"], "--recipient"),
    (["--recipient", "fr-hub", "--max-tlp", "RED"], "never leaves"),
    (["--recipient", "fr-hub", "--sequence", "0"], "--sequence"),
    (["--recipient", "fr-hub", "--outbox", "/nonexistent/x"], "no such folder"),
])
def test_seal_usage_errors(hubs, capsys, extra, needle):
    argv = ["bundle", "seal", "--key", hubs / "de-hub.pem", "--sender", "de-hub", "--trust", hubs / "trust.yaml",
            *extra]
    if "--outbox" not in extra:
        argv += ["--outbox", hubs / "out"]
    status, _, err = cli(capsys, *argv, hubs / "events.jsonl")
    assert status == 2 and needle in err, err


def test_seal_with_a_decryption_key_as_signing_key(hubs, capsys):
    status, _, err = cli(capsys, "bundle", "seal", "--key", hubs / "de-hub-dec.pem", "--sender", "de-hub",
                         "--recipient", "fr-hub", "--trust", hubs / "trust.yaml", "--outbox", hubs / "out",
                         hubs / "events.jsonl")
    assert status == 2 and "not a signing key file" in err


def test_rotate_signing_and_decryption_keys(hubs, capsys):
    old = b.load_signing_keys(hubs / "de-hub.pem")
    status, out, err = cli(capsys, "bundle", "keygen", "--rotate", "ml-dsa-65", "--from", hubs / "de-hub.pem",
                           "--private-key", hubs / "de-hub-2.pem", "--hub", "de-hub")
    assert status == 0, err
    new = b.load_signing_keys(hubs / "de-hub-2.pem")
    assert new.algorithms == ("ed25519", "ml-dsa-65")
    assert new.key_ids()[0] == old.key_ids()[0] and new.key_ids()[1] != old.key_ids()[1]
    assert f"peers mark {old.key_ids()[1]} revoked: true" in out
    printed = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    assert printed[0]["algorithm"] == "ml-dsa-65" and bc.key_id(bc.public_from_raw(
        "ml-dsa-65", __import__("base64").b64decode(printed[0]["public_key"]))) == new.key_ids()[1]
    status, out, _ = cli(capsys, "bundle", "keygen", "--rotate", "mlkem768-x25519", "--from",
                         hubs / "fr-hub-dec.pem", "--private-key", hubs / "fr-hub-dec-2.pem")
    assert status == 0 and len(b.load_decryption_keys(hubs / "fr-hub-dec-2.pem").keys) == 2
    # wrong kind of file, or the file in use as target
    assert cli(capsys, "bundle", "keygen", "--rotate", "ed25519", "--from", hubs / "fr-hub-dec.pem",
               "--private-key", hubs / "x.pem")[0] == 2
    assert cli(capsys, "bundle", "keygen", "--rotate", "ed25519", "--from", hubs / "de-hub.pem",
               "--private-key", hubs / "de-hub.pem", "--force")[0] == 2


def test_trust_add_pq_public_key(tmp_path, capsys):
    key = bc.generate(bc.ML_DSA_65)
    status, out, _ = cli(capsys, "bundle", "trust-add", "--trust", tmp_path / "t.yaml", "--hub", "it-hub",
                         "--algorithm", "ml-dsa-65", "--public-key", bc.public_b64(key))
    assert status == 0 and bc.key_id(key) in out
    status, _, err = cli(capsys, "bundle", "trust-add", "--trust", tmp_path / "t2.yaml", "--hub", "it-hub",
                         "--algorithm", "ml-dsa-65", "--public-key", bc.public_b64(bc.generate(bc.ED25519)))
    assert status == 2 and "ml-dsa-65 public key" in err


def test_verify_reports_downgrade(hubs, capsys):
    """A bundle signed with the Ed25519 key alone, from a peer the trust store requires hybrid of."""
    ed_only = hubs / "ed.pem"
    ed_only.write_bytes(bc.private_pem(b.load_signing_keys(hubs / "de-hub.pem").keys["ed25519"]))
    assert cli(capsys, "bundle", "seal", "--key", ed_only, "--sender", "de-hub", "--recipient", "fr-hub",
               "--trust", hubs / "trust.yaml", "--outbox", hubs / "out", hubs / "events.jsonl")[0] == 0
    (path,) = (hubs / "out").glob("*.xbundle")
    status, _, err = cli(capsys, "bundle", "verify", "--trust", hubs / "trust.yaml", path)
    assert status == 1 and f"BAD {path}: downgrade:" in err


def test_first_decryption_key_without_from(tmp_path, capsys):
    status, out, err = cli(capsys, "bundle", "keygen", "--rotate", "mlkem768-x25519", "--private-key",
                           tmp_path / "dec.pem", "--hub", "at-hub")
    assert status == 0, err
    (kid,) = b.load_decryption_keys(tmp_path / "dec.pem").keys
    assert kid in out and stat.S_IMODE((tmp_path / "dec.pem").stat().st_mode) == 0o600
