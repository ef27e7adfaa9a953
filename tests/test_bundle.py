"""Exchange bundle format 1.0: writing, verification, tampering, trust store, CLI."""
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.exchange_helpers import edit_json, events, read_members, replace_data_lines, resign, rewrite, write_trust
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.cli import main


@pytest.fixture()
def keys():
    return {"de-hub": b.generate_private_key(), "fr-hub": b.generate_private_key()}


@pytest.fixture()
def trust(tmp_path, keys):
    return write_trust(tmp_path / "trust.yaml", keys)


def make(tmp_path, keys, n=10, seq=1, sender="de-hub", recipient="fr-hub"):
    return b.write_bundle(tmp_path, sender, recipient, seq, keys[sender], events(n))


def reason(path, trust, recipient="fr-hub"):
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, recipient)
    return info.value.reason, str(info.value)


def test_roundtrip(tmp_path, keys, trust):
    path = make(tmp_path, keys, n=25, seq=7)
    assert path.name.startswith("de-hub_fr-hub_0000000007_") and path.suffix == ".xbundle"
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
    m = b.verify_bundle(path, trust, "fr-hub")
    assert (m.sender, m.recipient, m.sequence, m.event_count) == ("de-hub", "fr-hub", 7, 25)
    with b.open_bundle(path, trust, "fr-hub") as opened:
        opened.verify_data()
        got = [e for _, e in b.iter_events(opened)]
        assert got == events(25)
        assert [e["extra.n"] for _, e in b.iter_events(opened, start=20)] == [20, 21, 22, 23, 24]


def test_manifest_is_canonical_and_records_algorithm(tmp_path, keys):
    path = make(tmp_path, keys)
    members = read_members(path)
    assert [n for n, _ in members] == list(b.MEMBERS)
    manifest = json.loads(members[0][1])
    assert manifest["format"] == "intelmq-crossborder-bundle" and manifest["format_version"] == "1.0"
    assert manifest["signature"] == {"algorithms": ["ed25519"]}
    assert manifest["data"]["compression"] == "gzip" and len(manifest["data"]["sha256"]) == 64
    sigs = json.loads(members[1][1])["signatures"]
    assert sigs[0]["algorithm"] == "ed25519" and sigs[0]["key_id"] == b.key_id_of(keys["de-hub"])


def test_empty_bundle(tmp_path, keys, trust):
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], [])
    assert b.verify_bundle(path, trust).event_count == 0


def test_tampered_data_rejected(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    rewrite(path, data=replace_data_lines(lambda lines: [lines[0].replace(b"198.51", b"203.0")] + lines[1:]))
    code, text = reason(path, trust)
    assert code == "hash-mismatch" and "tampered" in text


def test_truncated_data_rejected(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    rewrite(path, data=lambda raw: raw[:-20])
    assert reason(path, trust)[0] == "hash-mismatch"


def test_tampered_manifest_breaks_signature(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    rewrite(path, manifest=edit_json(lambda m: m.update(recipient="at-hub")))
    code, text = reason(path, trust, recipient=None)
    assert code == "bad-signature" and "altered" in text


def test_sender_forged_with_other_peer_key(tmp_path, keys, trust):
    """fr-hub (a trusted peer) cannot sign as de-hub: its key is not one of de-hub's keys."""
    path = make(tmp_path, keys)
    resign(path, keys["fr-hub"], lambda m: None)
    assert reason(path, trust)[0] == "unknown-key"


def test_foreign_sender(tmp_path, keys, trust):
    stranger = b.generate_private_key()
    path = b.write_bundle(tmp_path, "xx-hub", "fr-hub", 1, stranger, events(2))
    code, text = reason(path, trust)
    assert code == "unknown-sender" and "xx-hub" in text


def test_wrong_recipient(tmp_path, keys, trust):
    path = make(tmp_path, keys, recipient="at-hub")
    code, text = reason(path, trust, recipient="fr-hub")
    assert code == "wrong-recipient" and "at-hub" in text


def test_revoked_key(tmp_path, keys):
    trust = write_trust(tmp_path / "t.yaml", keys, revoked={b.key_id_of(keys["de-hub"])})
    path = make(tmp_path, keys)
    code, text = reason(path, trust)
    assert code == "revoked-key" and "key compromised" in text


def test_key_rotation_old_and_new_key(tmp_path, keys):
    new = b.generate_private_key()
    trust = write_trust(tmp_path / "t.yaml", {"de-hub": [keys["de-hub"], new]},
                        revoked={b.key_id_of(keys["de-hub"])})
    good = b.write_bundle(tmp_path, "de-hub", "fr-hub", 2, new, events(1))
    assert b.verify_bundle(good, trust).sequence == 2
    assert reason(make(tmp_path, keys), trust)[0] == "revoked-key"


def test_count_mismatch_signed_by_sender(tmp_path, keys, trust):
    path = make(tmp_path, keys, n=3)
    resign(path, keys["de-hub"], lambda m: m.update(event_count=4))
    assert reason(path, trust)[0] == "count-mismatch"


def test_unknown_additional_algorithm_is_tolerated(tmp_path, keys, trust):
    """A future sender adds a signature algorithm this reader does not know: the Ed25519 one is
    still verified and the other reported as not checked."""
    path = make(tmp_path, keys)
    resign(path, keys["de-hub"], lambda m: m["signature"].update(algorithms=["ed25519", "slh-dsa-shake-128s"]))
    with b.open_bundle(path, trust, "fr-hub") as opened:
        assert opened.unverified_algorithms == ("slh-dsa-shake-128s",)
        assert opened.verified_algorithms == ("ed25519",)


def test_only_unknown_algorithm_is_rejected(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    resign(path, keys["de-hub"], lambda m: m["signature"].update(algorithms=["slh-dsa-shake-128s"]))
    assert reason(path, trust)[0] == "unsupported-version"


def test_required_ed25519_not_listed_is_a_downgrade(tmp_path, keys, trust):
    """The trust store requires ed25519 of de-hub (the default): a manifest listing only another
    algorithm is a downgrade, even one this reader supports."""
    path = make(tmp_path, keys)
    resign(path, keys["de-hub"], lambda m: m["signature"].update(algorithms=["ml-dsa-65"]))
    assert reason(path, trust)[0] == "downgrade"


def test_signature_stripped_for_listed_algorithm(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    rewrite(path, signatures=lambda raw: b'{"signatures": []}')
    assert reason(path, trust)[0] == "missing-signature"


def test_future_major_version_rejected(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    resign(path, keys["de-hub"], lambda m: m.update(format_version="3.0"))
    assert reason(path, trust)[0] == "unsupported-version"


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m.update(sequence=0), "sequence"),
    (lambda m: m.update(bundle_id="not-a-uuid"), "bundle_id"),
    (lambda m: m.update(sender="DE HUB"), "sender"),
    (lambda m: m["window"].update(start="yesterday"), "window.start"),
    (lambda m: m["data"].update(sha256="abc"), "data.sha256"),
])
def test_malformed_manifest_names_field(tmp_path, keys, trust, mutate, field):
    path = make(tmp_path, keys)
    resign(path, keys["de-hub"], mutate)
    code, text = reason(path, trust)
    assert code == "malformed" and field in text


def test_not_a_tar(tmp_path, trust):
    path = tmp_path / "junk.xbundle"
    path.write_bytes(b"hello")
    assert reason(path, trust)[0] == "malformed"


def test_extra_member_rejected(tmp_path, keys, trust):
    path = make(tmp_path, keys)
    with tarfile.open(path, "a") as tar:
        tar.add(__file__, arcname="evil.sh")
    code, text = reason(path, trust)
    assert code == "malformed" and "evil.sh" in text


def test_writer_abort_leaves_nothing(tmp_path, keys):
    with pytest.raises(RuntimeError):
        with b.BundleWriter(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"]) as w:
            w.write_event({"a": 1})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("doc, where", [
    ({"version": 2, "peers": {}}, "version"),
    ({"version": 1, "peers": {"Bad Hub": {"keys": []}}}, "Bad Hub"),
    ({"version": 1, "peers": {"de-hub": {"keys": [{"public_key": "AAAA"}]}}}, "public_key"),
    ({"version": 1, "peers": {"de-hub": {"country": "Germany", "keys": [{"public_key": "AAAA"}]}}}, "country"),
    ({"version": 1, "peers": {"de-hub": {"keys": [{"algorithm": "rsa", "public_key": "AAAA"}]}}}, "algorithm"),
])
def test_trust_store_errors_name_the_field(tmp_path, doc, where):
    import yaml
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(b.BundleError) as info:
        b.TrustStore.from_file(path)
    assert str(path) in str(info.value) and where in str(info.value)


event_values = st.one_of(st.text(max_size=30), st.integers(-10**6, 10**6), st.booleans(),
                         st.lists(st.text(max_size=5), max_size=3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?", fullmatch=True), event_values,
                                max_size=6), max_size=30))
def test_property_roundtrip(tmp_path, keys, trust, evs):
    folder = tmp_path / f"p{abs(hash(json.dumps(evs, sort_keys=True)))}"
    folder.mkdir(exist_ok=True)
    path = b.write_bundle(folder, "de-hub", "fr-hub", 1, keys["de-hub"], evs)
    with b.open_bundle(path, trust, "fr-hub") as opened:
        opened.verify_data()
        assert [e for _, e in b.iter_events(opened)] == evs
    path.unlink()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_property_any_single_byte_flip_is_detected(tmp_path, keys, trust, data):
    path = tmp_path / "flip.xbundle"
    if not path.exists():
        src = make(tmp_path, keys, n=5)
        src.rename(path)
    raw = bytearray(path.read_bytes())
    members = read_members(path)
    # flip a byte inside one of the member payloads (tar padding is not covered by any hash)
    offsets = []
    with tarfile.open(path, "r:") as tar:
        for m in tar.getmembers():
            offsets.append((m.offset_data, m.size))
    start, size = data.draw(st.sampled_from(offsets))
    index = data.draw(st.integers(start, start + size - 1))
    flipped = tmp_path / "flipped.xbundle"
    raw[index] ^= data.draw(st.integers(1, 255))
    flipped.write_bytes(bytes(raw))
    with pytest.raises(b.BundleError):
        b.verify_bundle(flipped, trust, "fr-hub")
    assert members


# --- CLI ----------------------------------------------------------------------------------------

def test_cli_verify_good(tmp_path, keys, trust, capsys):
    path = make(tmp_path, keys, n=4, seq=3)
    assert main(["bundle", "verify", "--trust", str(tmp_path / "trust.yaml"), str(path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"OK {path}: ")
    assert "from de-hub to fr-hub, sequence 3, 4 events" in out[0]


@pytest.mark.parametrize("tamper, code", [
    (lambda p, k: rewrite(p, data=replace_data_lines(lambda ls: ls[1:])), "hash-mismatch"),
    (lambda p, k: rewrite(p, manifest=edit_json(lambda m: m.update(sequence=9))), "bad-signature"),
    (lambda p, k: resign(p, k["fr-hub"], lambda m: None), "unknown-key"),
])
def test_cli_verify_bad(tmp_path, keys, trust, capsys, tamper, code):
    path = make(tmp_path, keys)
    tamper(path, keys)
    assert main(["bundle", "verify", "--trust", str(tmp_path / "trust.yaml"), str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"BAD {path}: {code}: ")


def test_cli_verify_recipient_and_revoked(tmp_path, keys, capsys):
    write_trust(tmp_path / "t.yaml", keys, revoked={b.key_id_of(keys["de-hub"])})
    path = make(tmp_path, keys)
    assert main(["bundle", "verify", "--trust", str(tmp_path / "t.yaml"), str(path)]) == 1
    assert "revoked-key" in capsys.readouterr().err
    write_trust(tmp_path / "t.yaml", keys)
    assert main(["bundle", "verify", "--trust", str(tmp_path / "t.yaml"), "--recipient", "at-hub", str(path)]) == 1
    assert "wrong-recipient" in capsys.readouterr().err


def test_cli_verify_config_errors_exit_2(tmp_path, keys, trust, capsys):
    path = make(tmp_path, keys)
    assert main(["bundle", "verify", "--trust", str(tmp_path / "missing.yaml"), str(path)]) == 2
    assert main(["bundle", "verify", "--trust", str(tmp_path / "trust.yaml"), str(tmp_path / "nope")]) == 2


def test_cli_keygen(tmp_path, capsys):
    import yaml
    key_file = tmp_path / "de.pem"
    assert main(["bundle", "keygen", "--private-key", str(key_file), "--hub", "de-hub", "--country", "DE"]) == 0
    out = capsys.readouterr().out
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = b.load_private_key(key_file)
    assert b.public_key_b64(key) in out and "PRIVATE" not in out
    entry = yaml.safe_load("\n".join(l for l in out.splitlines() if not l.startswith("#")))
    store = b.TrustStore.from_dict({"version": 1, "peers": entry})
    assert store.key("de-hub", b.key_id_of(key))
    assert main(["bundle", "keygen", "--private-key", str(key_file)]) == 2


# --- trust stores: keygen --trust-store and trust-add ---------------------------------------------

def _keygen_store(tmp_path, hub, country=None, *extra):
    args = ["bundle", "keygen", "--private-key", str(tmp_path / f"{hub}.pem"), "--hub", hub,
            "--trust-store", str(tmp_path / f"{hub}-trust.yaml"), *extra]
    if country:
        args += ["--country", country]
    assert main(args) == 0
    return b.load_private_key(tmp_path / f"{hub}.pem"), tmp_path / f"{hub}-trust.yaml"


def test_cli_keygen_writes_a_complete_trust_store(tmp_path, keys, capsys):
    key, store_file = _keygen_store(tmp_path, "de-hub", "DE")
    assert oct(store_file.stat().st_mode & 0o777) == "0o644"
    store = b.TrustStore.from_file(store_file)
    assert list(store.peers) == ["de-hub"] and store.country_of("de-hub") == "DE"
    assert store.key("de-hub", b.key_id_of(key)).public_key.public_bytes_raw() == \
        key.public_key().public_bytes_raw()
    # a bundle signed with the new key verifies against the written trust store
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, key, events(2))
    assert b.verify_bundle(path, store, "fr-hub").event_count == 2
    assert "written to" in capsys.readouterr().out
    # refused: no --hub, an existing file without --force; nothing overwritten
    before = store_file.read_bytes()
    assert main(["bundle", "keygen", "--private-key", str(tmp_path / "x.pem"), "--trust-store",
                 str(tmp_path / "x.yaml")]) == 2
    assert main(["bundle", "keygen", "--private-key", str(tmp_path / "y.pem"), "--hub", "de-hub",
                 "--trust-store", str(store_file)]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert store_file.read_bytes() == before and not (tmp_path / "x.pem").exists()
    assert not (tmp_path / "y.pem").exists() and not list(tmp_path.glob(".*.tmp"))


def test_cli_trust_add_from_a_peer_file_keeps_comments(tmp_path, capsys):
    de_key, de_file = _keygen_store(tmp_path, "de-hub", "DE")
    fr_key, fr_file = _keygen_store(tmp_path, "fr-hub", "FR")
    own = tmp_path / "trust.yaml"
    own.write_text("# our trust store: keep this comment\nversion: 1\npeers:\n    # the first peer\n"
                   "    at-hub:\n        keys:\n            - public_key: \"%s\"\n"
                   % b.public_key_b64(b.generate_private_key()))
    own.chmod(0o640)
    capsys.readouterr()
    assert main(["bundle", "trust-add", "--trust", str(own), "--from", str(de_file)]) == 0
    assert f"added peer de-hub (key {b.key_id_of(de_key)})" in capsys.readouterr().out
    assert main(["bundle", "trust-add", "--trust", str(own), "--from", str(fr_file)]) == 0
    text = own.read_text()
    assert text.startswith("# our trust store: keep this comment\n") and "# the first peer" in text
    assert oct(own.stat().st_mode & 0o777) == "0o640", "the file's permissions are kept"
    store = b.TrustStore.from_file(own)
    assert list(store.peers) == ["at-hub", "de-hub", "fr-hub"]
    assert store.country_of("fr-hub") == "FR" and store.key("de-hub", b.key_id_of(de_key))
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_trust_add_one_peer_and_a_new_store(tmp_path, capsys):
    key = b.generate_private_key()
    target = tmp_path / "new.yaml"
    assert main(["bundle", "trust-add", "--trust", str(target), "--hub", "it-hub", "--country", "IT",
                 "--public-key", b.public_key_b64(key), "--comment", "2026 key"]) == 0
    store = b.TrustStore.from_file(target)
    assert store.key("it-hub", b.key_id_of(key)) and store.country_of("it-hub") == "IT"
    assert "comment: 2026 key" in target.read_text()


def test_cli_trust_add_refuses_duplicates_and_conflicting_keys(tmp_path, capsys):
    de_key, de_file = _keygen_store(tmp_path, "de-hub", "DE")
    target = tmp_path / "trust.yaml"
    assert main(["bundle", "trust-add", "--trust", str(target), "--from", str(de_file)]) == 0
    before = target.read_bytes()
    capsys.readouterr()
    # the same hub again (even with another key): refused, exit 1, nothing written
    assert main(["bundle", "trust-add", "--trust", str(target), "--hub", "de-hub",
                 "--public-key", b.public_key_b64(b.generate_private_key())]) == 1
    assert "peer 'de-hub' is already listed (key ed25519:" in capsys.readouterr().err
    # the same key under another hub id
    assert main(["bundle", "trust-add", "--trust", str(target), "--hub", "it-hub",
                 "--public-key", b.public_key_b64(de_key)]) == 1
    err = capsys.readouterr().err
    assert f"key {b.key_id_of(de_key)} of 'it-hub' is already listed for 'de-hub'" in err
    assert target.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("args,message", [
    (["--hub", "DE HUB", "--public-key", "AAAA"], "is not a hub id"),
    (["--hub", "it-hub", "--public-key", "not base64!"], "--public-key is not the base64"),
    (["--hub", "it-hub", "--public-key", "AAAA"], "--public-key is not the base64"),
    (["--hub", "it-hub"], "--hub needs --public-key"),
    (["--hub", "it-hub", "--country", "Italy", "--public-key", "AAAA"], "--country 'Italy'"),
    ([], "give either --from FILE or --hub HUB"),
    (["--from", "missing.yaml"], "missing.yaml: no such file"),
])
def test_cli_trust_add_bad_input_exits_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["bundle", "trust-add", "--trust", "trust.yaml", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "trust.yaml").exists()


@pytest.mark.parametrize("content,message", [
    ("version: 2\npeers: {}\n", "unsupported trust store version"),
    ("version: 1\npeers:\n  de-hub:\n    keys:\n      - public_key: 12\n", "public_key"),
    (b"\xff\xfe", "UTF-8"),
    ("peers: [", "YAML"),
])
def test_cli_trust_add_to_an_unusable_store_exits_2(tmp_path, capsys, content, message):
    target = tmp_path / "trust.yaml"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["bundle", "trust-add", "--trust", str(target), "--hub", "it-hub",
                 "--public-key", b.public_key_b64(b.generate_private_key())]) == 2
    assert message in capsys.readouterr().err
    assert target.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_trust_store_written_anew_when_it_cannot_be_appended_to(tmp_path):
    """A flow-style (or otherwise laid out) file is rewritten whole; the result is the merged store."""
    first, second = b.generate_private_key(), b.generate_private_key()
    text = '{"version": 1, "peers": {"de-hub": {"keys": [{"public_key": "%s"}]}}}\n' % b.public_key_b64(first)
    peers = {"fr-hub": {"keys": [{"algorithm": "ed25519", "public_key": b.public_key_b64(second)}]}}
    new, kept = b.trust_store_with_peers(text, peers, "t.yaml")
    assert not kept
    store = b.TrustStore.from_dict(yaml_load(new))
    assert store.key("de-hub", b.key_id_of(first)) and store.key("fr-hub", b.key_id_of(second))
    # peers: not the last top-level key: appending would land in the wrong mapping
    text = "peers:\n  de-hub:\n    keys:\n      - public_key: %s\nversion: 1\n" % b.public_key_b64(first)
    new, kept = b.trust_store_with_peers(text, peers, "t.yaml")
    assert not kept and set(b.TrustStore.from_dict(yaml_load(new)).peers) == {"de-hub", "fr-hub"}
    new, kept = b.trust_store_with_peers(None, peers, "t.yaml")
    assert kept and set(b.TrustStore.from_dict(yaml_load(new)).peers) == {"fr-hub"}


def yaml_load(text):
    import yaml
    return yaml.safe_load(text)
