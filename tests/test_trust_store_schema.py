"""Trust stores and bundle manifests mean what they say (issue 12, section 2).

Whole-value identifiers (no trailing newline, no whitespace), revocation is global, one public key
belongs to one hub, ``version`` is the integer 1, sender != recipient, and hostile YAML/JSON (alias
bombs, huge values, duplicate keys, wrong types at every level) is a BundleError naming file and field.
"""
import base64
import gzip
import json
import time

import pytest
import yaml

from tests.exchange_helpers import edit_json, events, read_members, resign, rewrite, write_members, write_trust
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.exchange import importer as imp, spool as sp, transfer as x
from intelmq_crossborder.exchange.state import StateError
WHITESPACE = ["\n", " ", "\t", "\r\n", "\u00a0", "\u2028"]


@pytest.fixture()
def keys():
    return {"de-hub": b.generate_private_key(), "fr-hub": b.generate_private_key()}


def entry(key, **extra):
    return {"algorithm": "ed25519", "public_key": b.public_key_b64(key), **extra}


def store(peers, version=1):
    return {"version": version, "peers": peers}


def refused(doc, tmp_path, *needles):
    """The trust store ``doc`` (written as YAML) is refused with a message naming the file and ``needles``."""
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False) if not isinstance(doc, str) else doc, "utf-8")
    with pytest.raises(b.BundleError) as info:
        b.TrustStore.from_file(path)
    assert info.value.reason == "trust-store"
    for needle in (str(path),) + needles:
        assert needle in str(info.value), (needle, str(info.value))
    return str(info.value)


# --- whole-value identifiers ----------------------------------------------------------------------

@pytest.mark.parametrize("space", WHITESPACE)
@pytest.mark.parametrize("where", ["before", "after", "inside"])
def test_hub_id_with_whitespace_is_refused(tmp_path, keys, space, where):
    hub = {"before": space + "de-hub", "after": "de-hub" + space, "inside": "de" + space + "hub"}[where]
    refused(store({hub: {"keys": [entry(keys["de-hub"])]}}), tmp_path, "peers.", "hub id must match")
    assert not b.valid_hub_id(hub)


@pytest.mark.parametrize("country", ["FR\n", " FR", "FR ", "F R", "fr", "FRA", "\nFR"])
def test_country_must_be_two_capitals_and_nothing_else(tmp_path, keys, country):
    refused(store({"fr-hub": {"country": country, "keys": [entry(keys["fr-hub"])]}}), tmp_path,
            "peers.fr-hub.country")


@pytest.mark.parametrize("value", ["A" * 43 + "=\n", " " + "A" * 43 + "="])
def test_public_key_with_whitespace_is_refused(tmp_path, value):
    refused(store({"fr-hub": {"keys": [{"algorithm": "ed25519", "public_key": value}]}}), tmp_path,
            "peers.fr-hub.keys[0].public_key")


def test_valid_hub_id_is_a_whole_match():
    assert b.valid_hub_id("de-hub") and b.valid_hub_id("a") and b.valid_hub_id("x" * 63)
    for bad in ("de-hub\n", "de-hub\r", "de-hub ", "", "x" * 64, "DE-hub", "de_hub", "-de", 7, None, ["de-hub"]):
        assert not b.valid_hub_id(bad), repr(bad)


@pytest.mark.parametrize("field, value", [
    ("sender", "de-hub\n"), ("recipient", "fr-hub\n"), ("recipient", " fr-hub"), ("sender", "de hub"),
    ("format_version", "1.0\n"), ("format_version", "\u0661.0"), ("format_version", "1" * 5000 + ".0"),
])
def test_manifest_identifiers_are_whole_values(tmp_path, keys, field, value):
    trust = write_trust(tmp_path / "trust.yaml", {**keys, "de-hub\n".strip(): keys["de-hub"]})
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(2))
    resign(path, keys["de-hub"], lambda m: m.update({field: value}))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, recipient=None)
    assert info.value.reason == "malformed" and field in str(info.value) and path.name in str(info.value)


def test_manifest_sha256_with_trailing_newline_is_refused(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(2))
    resign(path, keys["de-hub"], lambda m: m["data"].update(sha256=m["data"]["sha256"] + "\n"))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and "data.sha256" in str(info.value)


@pytest.mark.parametrize("field, value", [
    ("sequence", True), ("event_count", True), ("sequence", 2 ** 63), ("sequence", 1.0), ("event_count", "2"),
])
def test_manifest_integers_are_integers(tmp_path, keys, field, value):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(1))
    resign(path, keys["de-hub"], lambda m: m.update({field: value}))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and field in str(info.value)


def test_manifest_data_size_true_is_not_one(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(1))
    resign(path, keys["de-hub"], lambda m: m["data"].update(size=True))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and "data.size" in str(info.value)


# --- sender != recipient --------------------------------------------------------------------------

def test_bundle_to_oneself_is_rejected(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(1))
    resign(path, keys["de-hub"], lambda m: m.update(recipient="de-hub"))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "de-hub")
    assert info.value.reason == "malformed" and "recipient" in str(info.value) and "sender" in str(info.value)


def test_writer_refuses_sender_equal_recipient(tmp_path, keys):
    with pytest.raises(ValueError, match="does not send to itself"):
        b.BundleWriter(tmp_path, "de-hub", "de-hub", 1, keys["de-hub"])
    assert list(tmp_path.iterdir()) == []


# --- version ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [True, 1.0, "1", [1], {"v": 1}, None, 2, 0, 10 ** 40])
def test_version_must_be_the_integer_one(tmp_path, keys, version):
    refused(store({"de-hub": {"keys": [entry(keys["de-hub"])]}}, version=version), tmp_path, "field version")


def test_version_true_in_yaml_text(tmp_path, keys):
    text = f"version: true\npeers:\n  de-hub:\n    keys:\n      - public_key: {b.public_key_b64(keys['de-hub'])}\n"
    refused(text, tmp_path, "field version", "expected the integer 1")
    ok = tmp_path / "ok.yaml"
    ok.write_text(text.replace("version: true", "version: 1"))
    assert b.TrustStore.from_file(ok).key("de-hub", b.key_id_of(keys["de-hub"]))


# --- revocation is global, one key one hub --------------------------------------------------------

@pytest.mark.parametrize("revoked_first", [True, False])
def test_revoked_key_listed_again_without_the_flag_stays_revoked(tmp_path, keys, revoked_first):
    key = keys["de-hub"]
    revoked = entry(key, revoked=True, revoked_reason="key compromised")
    plain = entry(key, comment="listed again, no flag")
    listed = [revoked, plain] if revoked_first else [plain, revoked]
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(store({"de-hub": {"keys": listed}})))
    trust = b.TrustStore.from_file(path)
    with pytest.raises(b.BundleError) as info:
        trust.key("de-hub", b.key_id_of(key))
    assert info.value.reason == "revoked-key" and "key compromised" in str(info.value)
    bundle = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, key, events(1))
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(bundle, trust, "fr-hub")
    assert info.value.reason == "revoked-key"


def test_same_public_key_under_two_hubs_is_an_error(tmp_path, keys):
    shared = keys["de-hub"]
    text = refused(store({"de-hub": {"keys": [entry(shared)]}, "at-hub": {"keys": [entry(shared)]}}), tmp_path,
                   "peers.at-hub.keys[0].public_key", "already listed under 'de-hub'")
    assert "one hub" in text


def test_revoked_under_one_hub_cannot_be_revived_under_another(tmp_path, keys):
    """The revival attempt through a second hub is refused outright (one key, one hub)."""
    shared = keys["de-hub"]
    refused(store({"de-hub": {"keys": [entry(shared, revoked=True)]}, "at-hub": {"keys": [entry(shared)]}}),
            tmp_path, "already listed under 'de-hub'")


@pytest.mark.parametrize("typo", ["revokd", "Revoked", "revoked ", "revoked\n", "public-key"])
def test_unknown_entry_key_is_an_error(tmp_path, keys, typo):
    """A misspelt 'revoked' must not leave the key trusted."""
    refused(store({"de-hub": {"keys": [entry(keys["de-hub"], **{typo: True})]}}), tmp_path,
            "peers.de-hub.keys[0]", "unknown key")


def test_unknown_peer_and_top_level_keys_are_errors(tmp_path, keys):
    refused(store({"de-hub": {"keys": [entry(keys["de-hub"])], "contry": "DE"}}), tmp_path, "peers.de-hub",
            "unknown key 'contry'")
    refused({**store({"de-hub": {"keys": [entry(keys["de-hub"])]}}), "peer": {}}, tmp_path, "unknown key 'peer'")


@pytest.mark.parametrize("flag", ["true", "yes", 1, "false", None])
def test_revoked_must_be_a_boolean(tmp_path, keys, flag):
    refused(store({"de-hub": {"keys": [entry(keys["de-hub"], revoked=flag)]}}), tmp_path,
            "peers.de-hub.keys[0].revoked")


# --- wrong types at every level -------------------------------------------------------------------

def _levels(key):
    good = entry(key)
    return [
        ([], "top level"),
        ("trust", "top level"),
        (store([]), "field peers"),
        (store(["de-hub"]), "field peers"),
        (store({}), "field peers"),
        (store({"de-hub": []}), "peers.de-hub"),
        (store({"de-hub": "key"}), "peers.de-hub"),
        (store({"de-hub": {"keys": {"k": good}}}), "peers.de-hub.keys"),
        (store({"de-hub": {"keys": good}}), "peers.de-hub.keys"),
        (store({"de-hub": {"keys": []}}), "peers.de-hub.keys"),
        (store({"de-hub": {"keys": [[good]]}}), "peers.de-hub.keys[0]"),
        (store({"de-hub": {"keys": ["AAAA"]}}), "peers.de-hub.keys[0]"),
        (store({"de-hub": {"keys": [{**good, "public_key": [good["public_key"]]}]}}), "keys[0].public_key"),
        (store({"de-hub": {"keys": [{**good, "public_key": 12345}]}}), "keys[0].public_key"),
        (store({"de-hub": {"keys": [{**good, "algorithm": ["ed25519"]}]}}), "keys[0].algorithm"),
        (store({"de-hub": {"keys": [{**good, "revoked_reason": ["x"]}]}}), "keys[0].revoked_reason"),
        (store({"de-hub": {"country": ["DE"], "keys": [good]}}), "peers.de-hub.country"),
        (store({"de-hub": {"comment": {"a": 1}, "keys": [good]}}), "peers.de-hub.comment"),
        (store({7: {"keys": [good]}}), "peers.7"),
    ]


def test_wrong_types_at_every_level_name_the_field(tmp_path, keys):
    for doc, where in _levels(keys["de-hub"]):
        refused(doc, tmp_path, where)


def test_from_dict_never_raises_anything_but_bundle_error(keys):
    for doc, where in _levels(keys["de-hub"]):
        with pytest.raises(b.BundleError, match=where.replace("[", r"\[").replace("]", r"\]")):
            b.TrustStore.from_dict(doc, "t.yaml")


# --- hostile YAML ---------------------------------------------------------------------------------

BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join(['*a%d' % (i - 1)] * 10)}]\n" for i in range(1, 10)) + "version: 1\npeers: *a9\n"


def test_alias_bomb_refused_quickly(tmp_path):
    started = time.monotonic()
    text = refused(BOMB, tmp_path)
    assert time.monotonic() - started < 5
    assert "billion laughs" in text or "expands" in text


def test_multi_megabyte_string_refused(tmp_path, keys):
    doc = f"version: 1\npeers:\n  de-hub:\n    comment: {'x' * (3 * 1024 * 1024)}\n    keys:\n" \
          f"      - public_key: {b.public_key_b64(keys['de-hub'])}\n"
    started = time.monotonic()
    refused(doc, tmp_path)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("text, needle", [
    ("version: 1\nversion: 1\npeers: {}\n", "duplicate key"),
    ("version: 1\npeers:\n  de-hub: {keys: []}\n  de-hub: {keys: []}\n", "duplicate key"),
    ("version: " + "9" * 5000 + "\npeers: {}\n", ""),
    ("version: 1\npeers: {de-hub: {keys: [{public_key: !!timestamp 2001-99-99}]}}\n", ""),
    ("version: 1\npeers: [" + "[" * 5000 + "]" * 5000 + "]\n", "nested"),
    ("version: 1\npeers: !!python/object:os.system {}\n", "not valid YAML"),
    ("version: 1\n\tpeers: {}\n", "not valid YAML"),
])
def test_hostile_yaml_is_a_trust_store_error(tmp_path, text, needle):
    refused(text, tmp_path, needle)


def test_not_utf8_directory_and_missing(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("version: 1\npeers: {d\xe9: {}}\n".encode("latin-1"))
    with pytest.raises(b.BundleError, match="not UTF-8"):
        b.TrustStore.from_file(bad)
    with pytest.raises(b.BundleError, match="directory"):
        b.TrustStore.from_file(tmp_path)
    with pytest.raises(b.BundleError, match="cannot read"):
        b.TrustStore.from_file(tmp_path / "missing.yaml")


# --- hostile manifest and signatures JSON ---------------------------------------------------------

def _members(tmp_path, keys):
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, keys["de-hub"], events(2))
    return path, dict(read_members(path))


def _sign(key, manifest: bytes) -> bytes:
    return json.dumps({"signatures": [{"algorithm": "ed25519", "key_id": b.key_id_of(key),
                                       "value": base64.b64encode(key.sign(manifest)).decode()}]}).encode()


@pytest.mark.parametrize("mutate, needle", [
    (lambda raw: raw.replace(b'"sender":"de-hub"', b'"sender":"de-hub","sender":"at-hub"'), "duplicate key"),
    (lambda raw: raw.replace(b'"sequence":1', b'"sequence":' + b"1" * 5000), "number"),
    (lambda raw: raw.replace(b'"sequence":1', b'"sequence":NaN'), "NaN"),
    (lambda raw: raw.replace(b'"de-hub"', b'"\\ud800"'), "surrogate"),
    (lambda raw: raw.replace(b'"de-hub"', b'"d\xe9"'), "UTF-8"),
    (lambda raw: b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (lambda raw: b"[]", "JSON object"),
])
def test_signed_hostile_manifest_is_malformed(tmp_path, keys, mutate, needle):
    """Even correctly signed by a trusted key, a manifest with duplicate keys (which one counts?),
    huge numbers or bad text is malformed, never read one way or another."""
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path, members = _members(tmp_path, keys)
    manifest = mutate(members["manifest.json"])
    write_members(path, [("manifest.json", manifest), ("signatures.json", _sign(keys["de-hub"], manifest)),
                         ("data.jsonl.gz", members["data.jsonl.gz"])])
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and needle in str(info.value) and path.name in str(info.value)


@pytest.mark.parametrize("signatures, needle", [
    (b'{"signatures": [], "signatures": []}', "duplicate key"),
    (b'{"signatures": {"algorithm": "ed25519"}}', "field signatures"),
    (b'[{"algorithm": "ed25519"}]', "field signatures"),
    (b'{"signatures": ["ed25519"]}', "field signatures"),
    (b"\xff\xfe", "UTF-8"),
])
def test_hostile_signatures_json_is_malformed(tmp_path, keys, signatures, needle):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path, _ = _members(tmp_path, keys)
    rewrite(path, signatures=lambda raw: signatures)
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and needle in str(info.value)


@pytest.mark.parametrize("key_id, value", [(["k"], "AAAA"), (None, "AAAA"), ("k", ["AAAA"]), ("k", 5)])
def test_signature_entry_with_wrong_types(tmp_path, keys, key_id, value):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path, _ = _members(tmp_path, keys)
    good_id = b.key_id_of(keys["de-hub"])
    doc = {"signatures": [{"algorithm": "ed25519", "key_id": good_id if key_id == "k" else key_id, "value": value}]}
    rewrite(path, signatures=lambda raw: json.dumps(doc).encode())
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason in ("bad-signature", "unknown-key")


# --- event lines: UTF-8, bounded, no duplicate keys -----------------------------------------------

def _resealed(tmp_path, keys, lines: bytes, count: int):
    """A bundle whose data is ``lines``, correctly hashed, counted and signed by de-hub."""
    import hashlib
    path, members = _members(tmp_path, keys)
    data = gzip.compress(lines, mtime=0)

    def fix(m):
        m["data"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        m["event_count"] = count
    manifest = edit_json(fix)(members["manifest.json"])
    write_members(path, [("manifest.json", manifest), ("signatures.json", _sign(keys["de-hub"], manifest)),
                         ("data.jsonl.gz", data)])
    return path


def test_event_line_not_utf8_makes_the_bundle_malformed(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = _resealed(tmp_path, keys, b'{"a": 1}\n{"b": "caf\xe9"}\n', 2)
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and "event line 2 is not UTF-8" in str(info.value)


def test_event_line_longer_than_the_cap(tmp_path, keys, monkeypatch):
    monkeypatch.setattr(b, "MAX_LINE_BYTES", 1000)
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = _resealed(tmp_path, keys, b'{"a": 1}\n{"b": "' + b"x" * 5000 + b'"}\n', 2)
    with pytest.raises(b.BundleError) as info:
        b.verify_bundle(path, trust, "fr-hub")
    assert info.value.reason == "malformed" and "event line 2 is longer than 1000 bytes" in str(info.value)


def test_iter_events_refuses_duplicate_keys(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    path = _resealed(tmp_path, keys, b'{"sharing.tlp": "RED", "sharing.tlp": "CLEAR"}\n', 1)
    with b.open_bundle(path, trust, "fr-hub") as opened:
        opened.verify_data()
        with pytest.raises(b.BundleError) as info:
            list(b.iter_events(opened))
    assert info.value.reason == "malformed" and "duplicate key" in str(info.value) and ":1:" in str(info.value)


def test_importer_quarantines_a_non_utf8_bundle_before_any_event(tmp_path, keys):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = _resealed(tmp_path, keys, b'{"a": 1}\n{"b": "\xff"}\n', 2)
    path.rename(inbox / path.name)
    got = []
    importer = imp.Importer("fr-hub", trust, tmp_path / "state", tmp_path / "quarantine")
    [result] = importer.run(inbox, lambda lines, *a: got.extend(lines))
    assert result.status == "rejected" and result.reason_code == "malformed" and got == []
    reason = json.loads((tmp_path / "quarantine" / (path.name + ".reason.json")).read_text())
    assert "not UTF-8" in reason["message"]


# --- exchange state files and pull listings -------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("[]", "top level"),
    ('{"peers": []}', "peers"),
    ('{"peers": {"de-hub": {"last_sequence": "7"}}}', "peers.de-hub.last_sequence"),
    ('{"peers": {"de-hub": {"last_sequence": true}}}', "peers.de-hub.last_sequence"),
    ('{"peers": {}, "in_progress": []}', "in_progress"),
    ('{"peers": {}, "in_progress": {"bundle_id": 1}}', "in_progress.bundle_id"),
    ('{"peers": {}, "pulled": {"a": 1}}', "pulled"),
    ('{"peers": {}, "peers": {}}', "duplicate key"),
    ('{"peers": ', "not valid JSON"),
    ('{"peers": {"de-hub": {"last_sequence": ' + "9" * 100 + '}}}', "number"),
])
def test_import_state_file_with_wrong_shape(tmp_path, keys, text, needle):
    trust = write_trust(tmp_path / "trust.yaml", keys)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "import-state.json").write_text(text)
    with pytest.raises(StateError) as info:
        imp.Importer("fr-hub", trust, tmp_path / "state", tmp_path / "quarantine")
    assert "import-state.json" in str(info.value) and needle in str(info.value)
    assert "repair or remove it" in str(info.value)


@pytest.mark.parametrize("text", ['{"next_sequence": "1"}', '{"next_sequence": 0}', "[1]",
                                  '{"next_sequence": 2, "spool_opened_at": "yesterday"}'])
def test_spool_state_file_with_wrong_shape(tmp_path, keys, text):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "state.json").write_text(text)
    with pytest.raises(StateError, match="state.json"):
        sp.Spool(tmp_path / "spool", tmp_path / "outbox", "de-hub", "fr-hub", keys["de-hub"])


def test_listing_keeps_only_safe_bundle_names():
    names = x._listing_names([
        "de-hub_fr-hub_0000000001_0b7a3f7e-5d0c-4a4e-9a55-1c1f6f0e7a01.xbundle",
        {"name": "ok.xbundle", "type": "file"}, {"name": "dir.xbundle", "type": "directory"},
        "../evil.xbundle", ".hidden.xbundle", "a/b.xbundle", "new\nline.xbundle", "x.xbundle\n",
        "sp ace.xbundle", "nul\x00.xbundle", "readme.txt", 5, ["x.xbundle"], {"name": ["x.xbundle"]}])
    assert names == ["de-hub_fr-hub_0000000001_0b7a3f7e-5d0c-4a4e-9a55-1c1f6f0e7a01.xbundle", "ok.xbundle"]
