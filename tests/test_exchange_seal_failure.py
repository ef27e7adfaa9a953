"""A seal that fails half-way (outbox full or read-only) loses nothing (found by the disk-fault tests)."""
import errno

import pytest

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.exchange import spool as exchange
def test_failed_seal_is_finished_before_the_next_one(tmp_path, monkeypatch):
    key = b.generate_private_key()
    spool = exchange.Spool(tmp_path / "spool", tmp_path / "outbox", "de-hub", "fr-hub", key)
    spool.recover()
    for i in range(3):
        spool.append(b'{"extra.n": %d}' % i)
    real = b.BundleWriter

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(b, "BundleWriter", no_space)
    with pytest.raises(OSError):
        spool.seal()
    for i in range(3, 5):
        spool.append(b'{"extra.n": %d}' % i)
    with pytest.raises(OSError):            # still failing: the earlier events must stay where they are
        spool.seal()
    monkeypatch.setattr(b, "BundleWriter", real)
    for i in range(5, 7):
        spool.append(b'{"extra.n": %d}' % i)
    spool.seal()
    trust = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"keys": [
        {"algorithm": "ed25519", "public_key": b.public_key_b64(key)}]}}})
    got = []
    for path in sorted((tmp_path / "outbox").glob("*.xbundle")):
        with b.open_bundle(path, trust, "fr-hub") as opened:
            opened.verify_data()
            got.extend(e["extra.n"] for _, e in b.iter_events(opened))
    assert sorted(got) == list(range(7))
