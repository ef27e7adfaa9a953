"""Unit tests of the accounting helper used by the fault-injection runs."""
from intelmq_crossborder.testing import accounting
def ev(seq, **kw):
    return accounting.stamp({"classification.type": "scanner", "source.ip": f"10.0.0.{seq}", **kw}, seq)


def test_everything_accounted():
    expected = {0: frozenset({"a", "b"}), 1: frozenset({"b"}), 2: frozenset(), 3: frozenset()}
    got = accounting.account(expected, {"a": [ev(0)], "b": [ev(0), ev(1), ev(1)]}, dumped=[3], filtered=[2])
    assert got.ok and got.duplicates["b"] == 1 and got.dumped == 1 and got.filtered == 1
    assert got.delivered == {"a": 1, "b": 2}


def test_lost_corrupt_misrouted_unknown_are_found():
    expected = {0: frozenset({"a"}), 1: frozenset({"a"}), 2: frozenset()}
    bad = ev(1)
    bad["source.ip"] = "10.9.9.9"                     # changed on the way: checksum mismatch
    got = accounting.account(expected, {"a": [bad, ev(7)], "b": [ev(0)]})
    assert not got.ok
    assert (0, "a") in got.lost and (2, None) in got.lost
    assert got.corrupt == [(1, "a")] and got.misrouted == [(0, "b")] and got.unknown == [(7, "a")]
