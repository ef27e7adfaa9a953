"""Post-quantum ready bundles (issue 18): hybrid Ed25519 + ML-DSA-65 signatures, data encrypted to
the recipient with HPKE MLKEM768-X25519, and every attack of the issue rejected with its own
reason code (docs/exchange-format.md, "Verification")."""
import base64
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from intelmq_crossborder.exchange.importer import Importer
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.formats import bundle_crypto as bc

HUBS = ("de-hub", "fr-hub", "it-hub")


@pytest.fixture(scope="module")
def keys():
    return {hub: {"ed25519": bc.generate(bc.ED25519), "ml-dsa-65": bc.generate(bc.ML_DSA_65),
                  "hpke": bc.generate(bc.HPKE_KEM)} for hub in HUBS}


def signing(keys, hub, hybrid=True):
    return b.SigningKeys([keys[hub]["ed25519"]] + ([keys[hub]["ml-dsa-65"]] if hybrid else []))


def entry(keys, hub, hybrid=True, hpke=True, require=None, revoked=()):
    ks = [keys[hub]["ed25519"]] + ([keys[hub]["ml-dsa-65"]] if hybrid else []) + ([keys[hub]["hpke"]] if hpke else [])
    peer = {"country": hub[:2].upper(), "keys": [
        {"algorithm": bc.algorithm_of(k), "public_key": bc.public_b64(k), "revoked": bc.key_id(k) in revoked}
        for k in ks]}
    if require is None:
        require = ["ed25519", "ml-dsa-65"] if hybrid else None
    if require:
        peer["signature_algorithms"] = require
    return peer


def store(keys, **peers):
    """store(keys, de_hub=dict(hybrid=True), ...) -> TrustStore"""
    return b.TrustStore.from_dict({"version": 1, "peers": {
        hub.replace("_", "-"): entry(keys, hub.replace("_", "-"), **opts) for hub, opts in peers.items()}})


def events(n, start=0):
    return [{"classification.type": "scanner", "source.ip": f"198.51.100.{i % 250 + 1}", "sharing.tlp": "GREEN",
             "extra.n": i} for i in range(start, start + n)]


def seal(tmp_path, keys, trust, sender="de-hub", recipient="fr-hub", seq=1, n=3, hybrid=True, encrypt=True, **kw):
    encrypt_to = trust.encryption_key(recipient) if encrypt else None
    return b.write_bundle(tmp_path, sender, recipient, seq, signing(keys, sender, hybrid), events(n), fsync=False,
                          encrypt_to=encrypt_to, **kw)


def dec(keys, hub="fr-hub"):
    return b.DecryptionKeys([keys[hub]["hpke"]])


def members(path):
    with tarfile.open(path, "r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_members(path, items):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tamper(path, manifest=None, signatures=None, data=None, sign_with=None):
    """Rewrite members (functions of the parsed manifest / signature list / data bytes); with
    ``sign_with`` (a SigningKeys) the manifest is signed again: a forger holding the keys."""
    items = dict(members(path))
    names = [n for n, _ in members(path)]
    doc = json.loads(items["manifest.json"])
    if manifest:
        manifest(doc)
        items["manifest.json"] = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    if data:
        items[names[2]] = data(items[names[2]])
    if sign_with is not None:
        items["signatures.json"] = json.dumps({"signatures": sign_with.sign_all(items["manifest.json"])}).encode()
    if signatures:
        sigs = json.loads(items["signatures.json"])["signatures"]
        items["signatures.json"] = json.dumps({"signatures": signatures(sigs)}).encode()
    write_members(path, [(n, items[n]) for n in names])
    return path


def reason(path, trust, recipient="fr-hub", keys=None):
    try:
        b.verify_bundle(path, trust, recipient, keys)
    except b.BundleError as exc:
        return exc.reason, exc.algorithm, str(exc)
    return None, None, "accepted"


# --- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("hybrid, encrypt, version", [(False, False, "1.0"), (True, False, "1.1"),
                                                      (False, True, "2.0"), (True, True, "2.0")])
def test_round_trip(tmp_path, keys, hybrid, encrypt, version):
    trust = store(keys, de_hub=dict(hybrid=hybrid), fr_hub=dict(hybrid=hybrid))
    path = seal(tmp_path, keys, trust, hybrid=hybrid, encrypt=encrypt, n=5)
    with b.open_bundle(path, trust, "fr-hub", dec(keys)) as opened:
        opened.verify_data()
        assert opened.manifest.format_version == version
        assert opened.verified_algorithms == (("ed25519", "ml-dsa-65") if hybrid else ("ed25519",))
        assert opened.decrypted is encrypt and opened.encrypted is encrypt
        assert [e for _, e in b.iter_events(opened)] == events(5)
    items = members(path)
    assert [n for n, _ in items] == ["manifest.json", "signatures.json", "data.jsonl.gz"]
    assert (items[2][1][:2] == b"\x1f\x8b") is not encrypt        # gzip magic only in clear


@pytest.mark.parametrize("n", [0, 1, 3000])
def test_encrypted_sizes_and_chunks(tmp_path, keys, n):
    """Empty data, one chunk, several chunks (uncompressed: > 64 KiB): the ciphertext is the
    plaintext plus one 16-byte tag per chunk, and decrypts to the same events."""
    trust = store(keys, fr_hub={})
    path = b.write_bundle(tmp_path, "de-hub", "fr-hub", 1, signing(keys, "de-hub"), events(n), fsync=False,
                          compresslevel=0, encrypt_to=trust.encryption_key("fr-hub"))
    trust = store(keys, de_hub={}, fr_hub={})
    with b.open_bundle(path, trust, "fr-hub", dec(keys)) as opened:
        opened.verify_data()
        plain = b"".join(line + b"\n" for _, line in opened.iter_lines())
        assert plain == b"".join(json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n"
                                 for e in events(n))
        compressed = opened._data().read()         # the decrypted member: valid gzip of the lines
        assert gzip.decompress(compressed) == plain
        assert opened.manifest.data_size == bc.ciphertext_size(len(compressed))
        compressed = len(compressed)
        if n == 3000:
            assert compressed > 2 * bc.CHUNK_PLAIN


def test_ciphertext_reveals_no_event(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust, n=50)
    raw = path.read_bytes()
    assert b"198.51.100" not in raw and b"scanner" not in raw
    manifest = json.loads(dict(members(path))["manifest.json"])
    assert set(manifest) == {"format", "format_version", "bundle_id", "sender", "recipient", "sequence", "created",
                             "window", "event_count", "data", "signature", "encryption"}


def test_without_decryption_key_verified_but_not_read(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust)
    with b.open_bundle(path, trust, "fr-hub") as opened:
        opened.verify_hash()
        with pytest.raises(RuntimeError):           # never read before verify_data
            next(opened.iter_lines())
        with pytest.raises(b.BundleError) as exc:
            opened.verify_data()
        assert exc.value.reason == "no-decryption-key"


def test_ciphertext_never_decrypted_before_its_hash_is_checked(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust)
    with b.open_bundle(path, trust, "fr-hub", dec(keys)) as opened:
        with pytest.raises(RuntimeError, match="before it is decrypted"):
            opened._data()


# --- the attacks of the issue: each with its own reason code -------------------------------------

def test_stripped_ml_dsa_signature(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = tamper(seal(tmp_path, keys, trust), signatures=lambda s: [x for x in s if x["algorithm"] != "ml-dsa-65"])
    assert reason(path, trust, keys=dec(keys))[:2] == ("missing-signature", "ml-dsa-65")


def test_stripped_ed25519_signature(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = tamper(seal(tmp_path, keys, trust), signatures=lambda s: [x for x in s if x["algorithm"] != "ed25519"])
    assert reason(path, trust, keys=dec(keys))[:2] == ("missing-signature", "ed25519")


def test_algorithm_list_rewritten_is_a_downgrade(tmp_path, keys):
    """ML-DSA removed from the signed list (and its signature stripped): rejected as a downgrade
    before any signature is looked at -- even a forger who could make Ed25519 signatures fails."""
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust)
    tamper(path, manifest=lambda m: m["signature"].update(algorithms=["ed25519"]),
           signatures=lambda s: [x for x in s if x["algorithm"] == "ed25519"])
    code, algorithm, message = reason(path, trust, keys=dec(keys))
    assert (code, algorithm) == ("downgrade", "ml-dsa-65") and "never accepted on the remaining" in message
    # the same forgery re-signed with the Ed25519 key (a broken Ed25519): still a downgrade
    tamper(path, sign_with=b.SigningKeys([keys["de-hub"]["ed25519"]]))
    assert reason(path, trust, keys=dec(keys))[:2] == ("downgrade", "ml-dsa-65")


def test_ed25519_only_bundle_from_a_hybrid_peer_is_a_downgrade(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust, hybrid=False)
    assert reason(path, trust, keys=dec(keys))[:2] == ("downgrade", "ml-dsa-65")


def test_algorithm_list_reordered_breaks_the_signatures(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = tamper(seal(tmp_path, keys, trust),
                  manifest=lambda m: m["signature"].update(algorithms=["ml-dsa-65", "ed25519"]))
    assert reason(path, trust, keys=dec(keys))[0] == "bad-signature"


@pytest.mark.parametrize("algorithm", ["ed25519", "ml-dsa-65"])
def test_one_failing_signature_rejects_whatever_the_other(tmp_path, keys, algorithm):
    """Never accepted on the remaining signature: one bad signature is enough."""
    trust = store(keys, de_hub={}, fr_hub={})

    def flip(sigs):
        for s in sigs:
            if s["algorithm"] == algorithm:
                raw = bytearray(base64.b64decode(s["value"]))
                raw[7] ^= 1
                s["value"] = base64.b64encode(bytes(raw)).decode()
        return sigs
    path = tamper(seal(tmp_path, keys, trust), signatures=flip)
    assert reason(path, trust, keys=dec(keys))[:2] == ("bad-signature", algorithm)


def test_swapped_encapsulated_key(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    (tmp_path / "other").mkdir()
    other = seal(tmp_path / "other", keys, trust)
    other_enc = json.loads(dict(members(other))["manifest.json"])["encryption"]["enc"]
    path = seal(tmp_path, keys, trust)
    # in the signed manifest: the signatures break
    tamper(path, manifest=lambda m: m["encryption"].update(enc=other_enc))
    assert reason(path, trust, keys=dec(keys))[0] == "bad-signature"
    # re-signed by a sender holding the keys: HPKE refuses the content key, nothing is decrypted
    tamper(path, sign_with=signing(keys, "de-hub"))
    assert reason(path, trust, keys=dec(keys))[:2] == ("decryption-failed", "mlkem768-x25519")


def test_flipped_ciphertext_byte(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    path = seal(tmp_path, keys, trust, n=200)

    def flip(data):
        raw = bytearray(data)
        raw[len(raw) // 2] ^= 0x40
        return bytes(raw)
    tamper(path, data=flip)
    assert reason(path, trust, keys=dec(keys))[0] == "hash-mismatch"      # checked before any decryption
    # with the hash in the manifest updated and re-signed: the AEAD tag refuses the chunk
    import hashlib
    data = members(path)[2][1]
    tamper(path, manifest=lambda m: m["data"].update(sha256=hashlib.sha256(data).hexdigest()),
           sign_with=signing(keys, "de-hub"))
    assert reason(path, trust, keys=dec(keys))[:2] == ("decryption-failed", "mlkem768-x25519")


def test_chunks_cut_or_reordered(tmp_path, keys):
    """A forger holding the signing keys drops the last chunk (the one flagged last) or swaps two:
    the STREAM nonces refuse it."""
    trust = store(keys, de_hub={}, fr_hub={})
    import hashlib
    for cut in ("drop-last", "swap"):
        folder = tmp_path / cut
        folder.mkdir()
        path = b.write_bundle(folder, "de-hub", "fr-hub", 1, signing(keys, "de-hub"), events(3000), fsync=False,
                              compresslevel=0, encrypt_to=trust.encryption_key("fr-hub"))
        data = members(path)[2][1]
        chunks = [data[i:i + bc.CHUNK_CIPHER] for i in range(0, len(data), bc.CHUNK_CIPHER)]
        new = b"".join(chunks[:-1]) if cut == "drop-last" else b"".join([chunks[1], chunks[0]] + chunks[2:])
        tamper(path, data=lambda _, new=new: new, manifest=lambda m, new=new: m["data"].update(
            sha256=hashlib.sha256(new).hexdigest(), size=len(new)), sign_with=signing(keys, "de-hub"))
        assert reason(path, trust, keys=dec(keys))[0] == "decryption-failed", cut


def test_bundle_encrypted_to_another_hub(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={}, it_hub={})
    # addressed to it-hub, delivered to fr-hub
    path = seal(tmp_path, keys, trust, recipient="it-hub")
    assert reason(path, trust, "fr-hub", dec(keys))[0] == "wrong-recipient"
    # addressed to fr-hub but encrypted to it-hub's key (a sender's trust store mixed the keys up)
    folder = tmp_path / "mixed"
    folder.mkdir()
    path = b.write_bundle(folder, "de-hub", "fr-hub", 1, signing(keys, "de-hub"), events(2), fsync=False,
                          encrypt_to=trust.encryption_key("it-hub"))
    assert reason(path, trust, "fr-hub", dec(keys))[:2] == ("wrong-encryption-key", "mlkem768-x25519")
    # it-hub, whose key it is, refuses it too: it is not the recipient
    assert reason(path, trust, "it-hub", dec(keys, "it-hub"))[0] == "wrong-recipient"


def test_replayed_bundle(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = seal(inbox, keys, trust, seq=1)
    copy = tmp_path / "captured.xbundle"
    copy.write_bytes(first.read_bytes())
    importer = Importer("fr-hub", trust, tmp_path / "state", tmp_path / "quarantine", tmp_path / "archive",
                        decryption_keys=dec(keys))
    got = []
    results = importer.run(inbox, lambda lines, *_: got.extend(lines))
    assert [r.status for r in results] == ["imported"] and len(got) == 3
    assert results[0].security == "signed ed25519+ml-dsa-65, decrypted"
    seal(inbox, keys, trust, seq=2)
    assert [r.status for r in importer.run(inbox, lambda *a: None)] == ["imported"]
    # the captured bundle replayed after its id left the importer's memory: a replay
    importer.state["peers"]["de-hub"]["recent"].clear()
    (inbox / first.name).write_bytes(copy.read_bytes())
    (result,) = importer.run(inbox, lambda *a: None)
    assert (result.status, result.reason_code) == ("rejected", "replay")
    info = json.loads((tmp_path / "quarantine" / (first.name + ".reason.json")).read_text())
    assert info["reason"] == "replay"


def test_importer_without_key_quarantines_encrypted_bundle(tmp_path, keys):
    trust = store(keys, de_hub={}, fr_hub={})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = seal(inbox, keys, trust)
    importer = Importer("fr-hub", trust, tmp_path / "state", tmp_path / "quarantine")
    (result,) = importer.run(inbox, lambda *a: pytest.fail("nothing may be emitted"))
    assert result.reason_code == "no-decryption-key"
    info = json.loads((tmp_path / "quarantine" / (path.name + ".reason.json")).read_text())
    assert info["algorithm"] == "mlkem768-x25519"
    assert importer.state["peers"]["de-hub"]["last_sequence"] == 0


# --- migration, rotation, revocation --------------------------------------------------------------

def test_migration_one_peer_at_a_time(tmp_path, keys):
    """de-hub starts signing hybrid before fr-hub knows its ML-DSA key: fr-hub accepts on Ed25519
    and reports ML-DSA not checked; once it lists the key it verifies both; once it requires both,
    an Ed25519-only bundle is a downgrade."""
    old = store(keys, de_hub=dict(hybrid=False, hpke=False), fr_hub={})
    path = seal(tmp_path, keys, old, encrypt=False)
    with b.open_bundle(path, old, "fr-hub") as opened:
        assert opened.verified_algorithms == ("ed25519",) and opened.unverified_algorithms == ("ml-dsa-65",)
    listed = store(keys, de_hub=dict(require=["ed25519"]), fr_hub={})
    with b.open_bundle(path, listed, "fr-hub") as opened:
        assert opened.verified_algorithms == ("ed25519", "ml-dsa-65") and not opened.unverified_algorithms
    folder = tmp_path / "classic"
    folder.mkdir()
    classic = seal(folder, keys, old, hybrid=False, encrypt=False)
    assert reason(classic, listed)[0] is None                    # not required yet: accepted
    required = store(keys, de_hub={}, fr_hub={})
    assert reason(classic, required)[:2] == ("downgrade", "ml-dsa-65")


def test_old_reader_reads_hybrid_and_refuses_encrypted(tmp_path, keys):
    """The 1.0 reference reader (frozen copy, tests/fixtures/exchange): a 1.1 hybrid bundle is read
    on its Ed25519 signature; a 2.0 encrypted one is refused cleanly, never misread."""
    import importlib.machinery
    import importlib.util
    import sys
    source = Path(__file__).parent / "fixtures" / "exchange" / "bundle_reader_1_0.py.txt"
    loader = importlib.machinery.SourceFileLoader("bundle_reader_1_0", str(source))
    old = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    sys.modules[loader.name] = old          # dataclasses look their module up
    try:
        loader.exec_module(old)
    finally:
        del sys.modules[loader.name]
    old_trust = old.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"keys": [
        {"algorithm": "ed25519", "public_key": bc.public_b64(keys["de-hub"]["ed25519"])}]}}})
    trust = store(keys, de_hub={}, fr_hub={})
    hybrid = seal(tmp_path, keys, trust, encrypt=False)
    assert old.verify_bundle(hybrid, old_trust, "fr-hub").event_count == 3
    folder = tmp_path / "enc"
    folder.mkdir()
    encrypted = seal(folder, keys, trust)
    with pytest.raises(old.BundleError) as exc:
        old.verify_bundle(encrypted, old_trust, "fr-hub")
    assert exc.value.reason == "unsupported-version" and "2.0" in str(exc.value)


def test_rotation_and_revocation_per_key(tmp_path, keys):
    new_ml = bc.generate(bc.ML_DSA_65)
    old_id = bc.key_id(keys["de-hub"]["ml-dsa-65"])
    doc = {"version": 1, "peers": {"de-hub": entry(keys, "de-hub", revoked={old_id}), "fr-hub": entry(keys, "fr-hub")}}
    doc["peers"]["de-hub"]["keys"].append({"algorithm": "ml-dsa-65", "public_key": bc.public_b64(new_ml)})
    trust = b.TrustStore.from_dict(doc)
    old_path = seal(tmp_path, keys, trust)
    assert reason(old_path, trust, keys=dec(keys))[:2] == ("revoked-key", "ml-dsa-65")
    folder = tmp_path / "new"
    folder.mkdir()
    new_path = b.write_bundle(folder, "de-hub", "fr-hub", 2, b.SigningKeys([keys["de-hub"]["ed25519"], new_ml]),
                              events(2), fsync=False, encrypt_to=trust.encryption_key("fr-hub"))
    assert reason(new_path, trust, keys=dec(keys))[0] is None


def test_encryption_key_choice_and_revocation(keys):
    old = bc.generate(bc.HPKE_KEM)
    doc = {"version": 1, "peers": {"fr-hub": entry(keys, "fr-hub")}}
    doc["peers"]["fr-hub"]["keys"].insert(0, {"algorithm": "mlkem768-x25519", "public_key": bc.public_b64(old)})
    trust = b.TrustStore.from_dict(doc)
    assert trust.encryption_key("fr-hub").key_id == bc.key_id(keys["fr-hub"]["hpke"])      # the last listed
    for k in doc["peers"]["fr-hub"]["keys"]:
        if k["algorithm"] == "mlkem768-x25519":
            k["revoked"] = True
    with pytest.raises(b.BundleError) as exc:
        b.TrustStore.from_dict(doc).encryption_key("fr-hub")
    assert exc.value.reason == "revoked-key" and "no bundle is sent in clear" in str(exc.value)
    assert b.TrustStore.from_dict(doc).encryption_key("nobody") is None


def test_decryption_key_rotation_reads_both(tmp_path, keys):
    new = bc.generate(bc.HPKE_KEM)
    trust = store(keys, de_hub={}, fr_hub={})
    old_bundle = seal(tmp_path, keys, trust)
    both = b.DecryptionKeys([keys["fr-hub"]["hpke"], new])
    assert reason(old_bundle, trust, keys=both)[0] is None


# --- key files ------------------------------------------------------------------------------------

def test_key_files(tmp_path, keys):
    path = tmp_path / "sign.pem"
    path.write_bytes(bc.private_pem(keys["de-hub"]["ed25519"], b"pw") + bc.private_pem(keys["de-hub"]["ml-dsa-65"],
                                                                                       b"pw"))
    assert b.load_signing_keys(path, b"pw").algorithms == ("ed25519", "ml-dsa-65")
    assert b.load_private_key(path, b"pw").public_key().public_bytes_raw() == \
        keys["de-hub"]["ed25519"].public_key().public_bytes_raw()
    with pytest.raises(b.BundleError, match="passphrase"):
        b.load_signing_keys(path, b"wrong")
    dec_path = tmp_path / "dec.pem"
    dec_path.write_bytes(bc.private_pem(keys["fr-hub"]["hpke"]))
    assert list(b.load_decryption_keys(dec_path).keys) == [bc.key_id(keys["fr-hub"]["hpke"])]


@pytest.mark.parametrize("content, needle", [
    (lambda k: b"hello", "no PEM private key block"),
    (lambda k: bc.private_pem(k["ed25519"]) + b"junk\n", "text outside"),
    (lambda k: bc.private_pem(k["ed25519"]) * 2, "two ed25519 keys"),
    (lambda k: bc.private_pem(k["hpke"]), "not a signing key file"),
    (lambda k: bc.private_pem(k["hpke"].mlkem), "not followed by its X25519 key"),
    (lambda k: bc.private_pem(k["hpke"].x25519), "X25519 key"),
])
def test_bad_signing_key_files(tmp_path, keys, content, needle):
    path = tmp_path / "k.pem"
    path.write_bytes(content(keys["de-hub"]))
    with pytest.raises(b.BundleError, match=needle) as exc:
        b.load_signing_keys(path)
    assert "PRIVATE KEY" not in str(exc.value) and "MII" not in str(exc.value)
    assert b.signing_key_problem(path)


def test_bad_decryption_key_files(tmp_path, keys):
    path = tmp_path / "d.pem"
    path.write_bytes(bc.private_pem(keys["de-hub"]["ed25519"]))
    with pytest.raises(b.BundleError, match="not a decryption key file"):
        b.load_decryption_keys(path)
    assert b.decryption_key_problem(path) and b.decryption_key_problem(tmp_path / "nope.pem")


# --- hostile trust stores and manifests -----------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    (lambda p, k: p["keys"][1].update(public_key=base64.b64encode(b"x" * 32).decode()), "keys[1].public_key"),
    (lambda p, k: p["keys"][2].update(public_key=bc.public_b64(k["ml-dsa-65"])), "keys[2].public_key"),
    (lambda p, k: p["keys"][0].update(algorithm="ML-DSA-65"), "keys[0].algorithm"),
    (lambda p, k: p["keys"][0].update(algorithm="ml-dsa-65 "), "keys[0].algorithm"),
    (lambda p, k: p.update(signature_algorithms="ed25519"), "signature_algorithms"),
    (lambda p, k: p.update(signature_algorithms=[]), "signature_algorithms"),
    (lambda p, k: p.update(signature_algorithms=["ed25519", "ed25519"]), "signature_algorithms[1]"),
    (lambda p, k: p.update(signature_algorithms=["ed25519", "mlkem768-x25519"]), "signature_algorithms[1]"),
    (lambda p, k: p.update(signature_algorithms=["ed25519", "slh-dsa"]), "signature_algorithms[1]"),
    (lambda p, k: p.update(signature_algorithms=[["ed25519"]]), "signature_algorithms"),
    (lambda p, k: p.update(signature_algorithms=None), "signature_algorithms"),
    (lambda p, k: p.update(signature_algoritms=["ed25519"]), "unknown key"),
    (lambda p, k: p["keys"].pop(1), "signature_algorithms[1]"),        # requires ml-dsa-65, lists no such key
])
def test_hostile_trust_store_entries(keys, change, field):
    peer = entry(keys, "de-hub")
    change(peer, keys["de-hub"])
    with pytest.raises(b.BundleError) as exc:
        b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": peer}}, "t.yaml")
    assert exc.value.reason == "trust-store" and field in str(exc.value), str(exc.value)


def test_pq_key_under_two_hubs_refused(keys):
    de, fr = entry(keys, "de-hub"), entry(keys, "fr-hub")
    fr["keys"][1]["public_key"] = de["keys"][1]["public_key"]
    with pytest.raises(b.BundleError, match="one hub only"):
        b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": de, "fr-hub": fr}})


def test_revoked_pq_key_revoked_everywhere(tmp_path, keys):
    de = entry(keys, "de-hub")
    de["keys"].append(dict(de["keys"][1], revoked=True))
    trust = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": de, "fr-hub": entry(keys, "fr-hub")}})
    assert reason(seal(tmp_path, keys, trust), trust, keys=dec(keys))[:2] == ("revoked-key", "ml-dsa-65")


def test_trust_store_file_round_trip(tmp_path, keys):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "peers": {"de-hub": entry(keys, "de-hub")}}))
    assert b.TrustStore.from_file(path).required_algorithms("de-hub") == ("ed25519", "ml-dsa-65")


@pytest.mark.parametrize("change, code", [
    (lambda m: m.pop("encryption"), "malformed"),
    (lambda m: m["encryption"].update(enc=m["encryption"]["enc"][:-8]), "malformed"),
    (lambda m: m["encryption"].update(enc=m["encryption"]["enc"] + "\n"), "malformed"),
    (lambda m: m["encryption"].update(wrapped_key=123), "malformed"),
    (lambda m: m["encryption"].update(chunk_size=65536.0), "malformed"),
    (lambda m: m["encryption"].update(chunk_size=True), "malformed"),
    (lambda m: m["encryption"].update(chunk_size=1), "malformed"),
    (lambda m: m["encryption"].update(kem="MLKEM1024-P384"), "unsupported-version"),
    (lambda m: m["encryption"].update(aead="CHACHA20-POLY1305"), "unsupported-version"),
    (lambda m: m["encryption"].update(recipient_key_id="ed25519:" + "0" * 32), "malformed"),
    (lambda m: m["encryption"].update(recipient_key_id=m["encryption"]["recipient_key_id"] + "\n"), "malformed"),
    (lambda m: m["encryption"].update(extra="x"), "malformed"),
    (lambda m: m.update(encryption=[]), "malformed"),
    (lambda m: m.update(format_version="1.1"), "malformed"),                    # 1.x with encryption
    (lambda m: m["data"].update(member="data.jsonl.gz.enc"), "malformed"),
    (lambda m: m["signature"].update(algorithms=["ed25519", "ml-dsa-65", "ed25519"]), "malformed"),
])
def test_hostile_encrypted_manifests(tmp_path, keys, change, code):
    """Even correctly signed by the sender, a manifest with a bad encryption field is refused."""
    trust = store(keys, de_hub={}, fr_hub={})
    path = tamper(seal(tmp_path, keys, trust), manifest=change, sign_with=signing(keys, "de-hub"))
    assert reason(path, trust, keys=dec(keys))[0] == code
