"""Fuzz the exchange-bundle reader (container, manifest, signatures, data) with damaged bundles.

Three kinds of damage, 10,000 cases in all by default (XB_FUZZ_EXAMPLES scales it):
* structural: the manifest JSON mutated and then RE-SIGNED with the sender's key, so the
  checks behind the signature (fields, recipient, hash, count) are reached;
* data: the event lines / the gzip stream damaged, manifest hash, size and count
  recomputed and re-signed, so the gzip and JSON-lines decoding is reached;
* bytes: the whole tar container truncated, flipped, spliced.

Every input either verifies and yields JSON objects, or raises BundleError with a
reason code and a message naming the bundle file.  Nothing else escapes.
"""
import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzzing
from intelmq_crossborder.formats import bundle as b

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)
# A fixed test key (derived from a constant, so the cases are the same on every run; it signs nothing real).
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"intelmq-crossborder fuzz test key").digest())
TRUST = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"country": "DE", "keys": [
    {"algorithm": "ed25519", "public_key": b.public_key_b64(KEY)}]}}}, "fuzz-trust.yaml")
RECIPIENT = "fr-hub"
EVENTS = [
    [{"classification.type": "scanner", "source.ip": "198.51.100.7", "sharing.tlp": "GREEN",
      "provenance.origin_hub": "de-hub", "time.observation": "2026-11-20T01:02:03+00:00"}],
    [{"classification.type": "phishing", "source.url": "http://example.com/x", "sharing.tlp": "CLEAR",
      "extra.n": i} for i in range(3)],
    [],
]
NAME = "de-hub_fr-hub_000001.xbundle"


def _gz(lines: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(lines)
    return buf.getvalue()


def _lines(events) -> bytes:
    return b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in events)


def _manifest(data: bytes, count: int) -> dict:
    return {"format": b.FORMAT, "format_version": b.FORMAT_VERSION,
            "bundle_id": "0b7a3f7e-5d0c-4a4e-9a55-1c1f6f0e7a01", "sender": "de-hub", "recipient": RECIPIENT,
            "sequence": 1, "created": "2026-11-20T02:00:00Z",
            "window": {"start": "2026-11-20T01:00:00Z", "end": "2026-11-20T02:00:00Z"}, "event_count": count,
            "data": {"member": "data.jsonl.gz", "encoding": "jsonl", "compression": "gzip",
                     "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            "signature": {"algorithms": ["ed25519"]}}


def _sign(manifest_bytes: bytes) -> bytes:
    sig = base64.b64encode(KEY.sign(manifest_bytes)).decode()
    return json.dumps({"signatures": [{"algorithm": "ed25519", "key_id": b.key_id_of(KEY),
                                       "value": sig}]}).encode()


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def build(manifest, data: bytes) -> bytes:
    mbytes = manifest if isinstance(manifest, bytes) else fuzzing.dumps(manifest)
    return _tar([("manifest.json", mbytes), ("signatures.json", _sign(mbytes)), ("data.jsonl.gz", data)])


SEED_DATA = [_gz(_lines(ev)) for ev in EVENTS]
SEED_MANIFESTS = [_manifest(d, len(ev)) for d, ev in zip(SEED_DATA, EVENTS)]
SEED_BUNDLES = [build(m, d) for m, d in zip(SEED_MANIFESTS, SEED_DATA)]


def read_bundle(data: bytes, workdir: Path) -> None:
    """Verify and read one bundle as the importer does; raises only BundleError."""
    path = workdir / NAME
    path.write_bytes(data)
    with fuzzing.time_guard():
        try:
            with b.open_bundle(path, TRUST, RECIPIENT) as opened:
                opened.verify_data()
                for _index, event in b.iter_events(opened):
                    assert isinstance(event, dict)
        except b.BundleError as exc:
            assert exc.reason and NAME in str(exc), f"error does not name the bundle: {exc}"
            return


def _record(test_name: str, data: bytes, workdir: Path):
    try:
        read_bundle(data, workdir)
    except BaseException:
        fuzzing.save_crasher("bundle", data, test_name, ".xbundle")
        raise


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-bundle")


def test_seeds_verify(workdir):
    for seed, events in zip(SEED_BUNDLES, EVENTS):
        path = workdir / NAME
        path.write_bytes(seed)
        with b.open_bundle(path, TRUST, RECIPIENT) as opened:
            opened.verify_data()
            assert [e for _, e in b.iter_events(opened)] == events


@fuzzing.fuzz_settings(0.4)
@given(st.data())
def test_fuzz_bundle_manifest(workdir, data):
    index = data.draw(st.integers(0, len(SEED_DATA) - 1))
    manifest = data.draw(fuzzing.mutated_json([SEED_MANIFESTS[index]]))
    _record("bundle_manifest", build(manifest, SEED_DATA[index]), workdir)


@st.composite
def damaged_data(draw):
    index = draw(st.integers(0, len(EVENTS) - 1))
    if draw(st.booleans()):        # damaged event lines, valid gzip
        lines = draw(fuzzing.mutated_bytes([_lines(EVENTS[index]) or b"{}\n"]))
        raw = lines
        data = _gz(lines)
    else:                          # damaged gzip stream
        data = draw(fuzzing.mutated_bytes([SEED_DATA[index]]))
        raw = b""
    count = raw.count(b"\n") if raw else draw(st.integers(0, 5))
    return _manifest(data, count), data


@fuzzing.fuzz_settings(0.3)
@given(damaged_data())
def test_fuzz_bundle_data(workdir, case):
    manifest, data = case
    _record("bundle_data", build(manifest, data), workdir)


@fuzzing.fuzz_settings(0.3)
@given(fuzzing.mutated_bytes(SEED_BUNDLES))
def test_fuzz_bundle_container(workdir, data):
    _record("bundle_container", data, workdir)


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "bundle").glob("*")), ids=lambda p: p.name)
def test_bundle_crasher_regressions(workdir, path):
    read_bundle(path.read_bytes(), workdir)


# --- format 1.1/2.0: hybrid signatures, encrypted data (issue 18) ----------------------------------

from intelmq_crossborder.formats import bundle_crypto as bc  # noqa: E402

ML_KEY = bc.MLDSA65PrivateKey.from_seed_bytes(hashlib.sha256(b"intelmq-crossborder fuzz ml-dsa key").digest())
KEM_KEY = bc.HybridKEMPrivateKey(
    bc.MLKEM768PrivateKey.from_seed_bytes(hashlib.sha512(b"intelmq-crossborder fuzz ml-kem key").digest()),
    bc.X25519PrivateKey.from_private_bytes(hashlib.sha256(b"intelmq-crossborder fuzz x25519 key").digest()))
PQ_SIGNERS = b.SigningKeys([KEY, ML_KEY])
PQ_TRUST = b.TrustStore.from_dict({"version": 1, "peers": {
    "de-hub": {"country": "DE", "signature_algorithms": ["ed25519", "ml-dsa-65"], "keys": [
        {"algorithm": "ed25519", "public_key": bc.public_b64(KEY)},
        {"algorithm": "ml-dsa-65", "public_key": bc.public_b64(ML_KEY)}]},
    RECIPIENT: {"keys": [{"algorithm": "mlkem768-x25519", "public_key": bc.public_b64(KEM_KEY)}]}}},
    "fuzz-pq-trust.yaml")
PQ_DECRYPT = b.DecryptionKeys([KEM_KEY])


def _pq_seed(tmp: Path, events) -> tuple:
    """(manifest dict, ciphertext) of an encrypted bundle written by the library."""
    path = b.write_bundle(tmp, "de-hub", RECIPIENT, 1, PQ_SIGNERS, events, fsync=False,
                          encrypt_to=PQ_TRUST.encryption_key(RECIPIENT), bundle_id="0b7a3f7e-5d0c-4a4e-9a55-1c1f6f0e7a02")
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        data = tar.extractfile("data.jsonl.gz").read()
    path.unlink()
    return manifest, data


def _pq_build(manifest, data: bytes, signatures=None) -> bytes:
    mbytes = manifest if isinstance(manifest, bytes) else fuzzing.dumps(manifest)
    sigs = signatures if signatures is not None else json.dumps({"signatures": PQ_SIGNERS.sign_all(mbytes)}).encode()
    return _tar([("manifest.json", mbytes), ("signatures.json", sigs), ("data.jsonl.gz", data)])


def _pq_seeds():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return [_pq_seed(Path(tmp), ev) for ev in EVENTS]


PQ_SEEDS = _pq_seeds()


def read_pq_bundle(data: bytes, workdir: Path) -> None:
    """As read_bundle, against the hybrid trust store and with the recipient's decryption key."""
    path = workdir / NAME
    path.write_bytes(data)
    with fuzzing.time_guard():
        try:
            with b.open_bundle(path, PQ_TRUST, RECIPIENT, PQ_DECRYPT) as opened:
                opened.verify_data()
                assert opened.decrypted or not opened.encrypted
                assert set(PQ_TRUST.required_algorithms("de-hub")) <= set(opened.verified_algorithms)
                for _index, event in b.iter_events(opened):
                    assert isinstance(event, dict)
        except b.BundleError as exc:
            assert exc.reason and NAME in str(exc), f"error does not name the bundle: {exc}"


def _record_pq(test_name: str, data: bytes, workdir: Path):
    try:
        read_pq_bundle(data, workdir)
    except BaseException:
        fuzzing.save_crasher("bundle-pq", data, test_name, ".xbundle")
        raise


def test_pq_seeds_verify(workdir):
    for (manifest, data), events in zip(PQ_SEEDS, EVENTS):
        path = workdir / NAME
        path.write_bytes(_pq_build(manifest, data))
        with b.open_bundle(path, PQ_TRUST, RECIPIENT, PQ_DECRYPT) as opened:
            opened.verify_data()
            assert [e for _, e in b.iter_events(opened)] == events and opened.decrypted


@fuzzing.fuzz_settings(0.1)
@given(st.data())
def test_fuzz_pq_manifest(workdir, data):
    """The 2.0 manifest (encryption fields, algorithm list, ...) mutated and re-signed with both keys."""
    index = data.draw(st.integers(0, len(PQ_SEEDS) - 1))
    manifest = data.draw(fuzzing.mutated_json([PQ_SEEDS[index][0]]))
    _record_pq("pq_manifest", _pq_build(manifest, PQ_SEEDS[index][1]), workdir)


@fuzzing.fuzz_settings(0.1)
@given(st.data())
def test_fuzz_pq_signatures(workdir, data):
    """signatures.json of a hybrid bundle mutated: stripped, duplicated, retyped, re-encoded."""
    index = data.draw(st.integers(0, len(PQ_SEEDS) - 1))
    manifest, payload = PQ_SEEDS[index]
    mbytes = fuzzing.dumps(manifest)
    sigs = data.draw(fuzzing.mutated_json([{"signatures": PQ_SIGNERS.sign_all(mbytes)}]))
    _record_pq("pq_signatures", _pq_build(mbytes, payload, fuzzing.dumps(sigs)), workdir)


@fuzzing.fuzz_settings(0.1)
@given(st.data())
def test_fuzz_pq_ciphertext(workdir, data):
    """The ciphertext damaged and its hash and size re-signed: the AEAD, not luck, refuses it."""
    index = data.draw(st.integers(0, len(PQ_SEEDS) - 1))
    manifest, payload = PQ_SEEDS[index]
    damaged = data.draw(fuzzing.mutated_bytes([payload]))
    manifest = json.loads(json.dumps(manifest))
    manifest["data"].update(sha256=hashlib.sha256(damaged).hexdigest(), size=len(damaged))
    _record_pq("pq_ciphertext", _pq_build(manifest, damaged), workdir)
    if damaged != payload:
        path = workdir / NAME
        path.write_bytes(_pq_build(manifest, damaged))
        with pytest.raises(b.BundleError) as exc:
            with b.open_bundle(path, PQ_TRUST, RECIPIENT, PQ_DECRYPT) as opened:
                opened.verify_data()
        assert exc.value.reason in ("decryption-failed", "malformed")


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "bundle-pq").glob("*")), ids=lambda p: p.name)
def test_pq_bundle_crasher_regressions(workdir, path):
    read_pq_bundle(path.read_bytes(), workdir)


@pytest.mark.parametrize("name, code", [("truncated-last-chunk.xbundle", "decryption-failed"),
                                        ("enc-too-short.xbundle", "malformed"),
                                        ("huge-chunk-size.xbundle", "malformed")])
def test_pq_written_cases_rejected(workdir, name, code):
    path = workdir / NAME
    path.write_bytes((fuzzing.FUZZ_DIR / "bundle-pq" / name).read_bytes())
    with pytest.raises(b.BundleError) as exc:
        with b.open_bundle(path, PQ_TRUST, RECIPIENT, PQ_DECRYPT) as opened:
            opened.verify_data()
    assert exc.value.reason == code, str(exc.value)
