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
