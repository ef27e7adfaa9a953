"""Shared pieces of the parser fuzz tests (tests/test_fuzz_*.py).

* :func:`examples` – how many cases each fuzz test runs: 10,000 by default
  (the issue's CI figure); ``XB_FUZZ_EXAMPLES=100000`` for a longer run.
* :func:`mutated_json` / :func:`mutated_bytes` – hypothesis strategies that
  take small real seed documents and damage them: wrong types, deleted and
  added keys, huge strings, deep nesting, truncation, byte flips, splices.
* :func:`time_guard` – a per-case wall-clock guard (SIGALRM): a case that runs
  longer than the limit fails as a hang instead of stalling CI.
* :func:`save_crasher` – writes an input that broke a parser to
  ``tests/fixtures/fuzz/<parser>/`` so the replay test keeps it forever.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_DIR = Path(__file__).parent / "fixtures" / "fuzz"
CASE_SECONDS = float(os.environ.get("XB_FUZZ_CASE_SECONDS", "10"))


def examples() -> int:
    return int(os.environ.get("XB_FUZZ_EXAMPLES", "10000"))


def fuzz_settings(share: float = 1.0, **kwargs):
    """``share`` of :func:`examples` cases; reproducible (derandomize, no example database), so CI
    runs the same cases every time."""
    return settings(max_examples=max(1, int(examples() * share)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), **kwargs)


class Hang(Exception):
    """A single fuzz case ran longer than the per-case guard."""


@contextlib.contextmanager
def time_guard(seconds: float = CASE_SECONDS):
    def alarm(signum, frame):
        raise Hang(f"one case ran longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def save_crasher(parser: str, data: bytes, test_name: str, suffix: str = ".bin") -> Path:
    """Keep an input that broke a parser as ``tests/fixtures/fuzz/<parser>/new-<test>.<suffix>``.

    Hypothesis replays the shrunk (minimal) failing case last, so the file left behind is the
    minimal crasher; rename it (e.g. to what it exercises) and commit it with the fix.
    """
    folder = FUZZ_DIR / parser
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"new-{test_name}{suffix}"
    path.write_bytes(data)
    return path


# --- strategies ---------------------------------------------------------------

def _paths(doc, prefix=()):
    """Every (container path) -> key/index inside a JSON value, the root included as ()."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.extend(_paths(value, prefix + (index,)))
    return out


def _get(doc, path):
    for part in path:
        doc = doc[part]
    return doc


def deep(depth: int, kind: str = "list"):
    value = None
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def odd_values_up_to(huge: int = 300_000, depth: int = 400):
    """Wrong-typed, oversized and odd values put in place of real ones."""
    return st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "TLP:RED", "tlp:amber+strict", "WHITE", "CLEAR", "unknown", "2.0", "2.1", "1.0",
                     "0", "-1", "9" * 40, "2024-13-45T25:61:61Z", "not-a-date", "de-hub", "../../etc/passwd",
                     "\x00", "\u202e", "CVE-2024-0001", "urn:uuid:x", "ed25519"]),
    st.integers(min_value=huge // 30, max_value=huge).map(lambda n: "A" * n),         # huge strings
    st.integers(min_value=10, max_value=depth).map(deep),                              # deep nesting
    st.integers(min_value=10, max_value=depth).map(lambda d: deep(d, "dict")),
    st.lists(st.integers(), max_size=5), st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    )


odd_values = odd_values_up_to()


@st.composite
def mutated_json(draw, seeds: list, max_mutations: int = 4, values=None):
    """A deep copy of one seed document with 1..max_mutations structural mutations."""
    values = values if values is not None else odd_values
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=max_mutations))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "copy"]))
        if not path:
            if op == "replace":
                doc = draw(values)
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(st.sampled_from(["x", "id", "label", "category", "" , "product_id"]))] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
            else:
                parent[key] = [target, draw(values)]
        else:   # copy another node of the document here (wrong but well-formed content)
            other = draw(st.sampled_from(paths))
            parent[key] = copy.deepcopy(_get(doc, other)) if other[: len(path)] != path else None
    return doc


@st.composite
def mutated_bytes(draw, seeds: list, max_depth: int = 200_000):
    """Byte-level damage to a seed (bytes): truncation, flips, insertions, splices, encodings."""
    data = bytearray(draw(st.sampled_from(seeds)))
    op = draw(st.sampled_from(["truncate", "flip", "insert", "splice", "bom", "utf16", "nesting", "empty"]))
    if op == "truncate":
        del data[draw(st.integers(min_value=0, max_value=max(0, len(data) - 1))):]
    elif op == "flip":
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[i] ^= draw(st.integers(min_value=1, max_value=255))
    elif op == "insert":
        i = draw(st.integers(min_value=0, max_value=len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    elif op == "splice":
        i = draw(st.integers(min_value=0, max_value=len(data)))
        j = draw(st.integers(min_value=i, max_value=len(data)))
        other = draw(st.sampled_from(seeds))
        k = draw(st.integers(min_value=0, max_value=len(other)))
        data[i:j] = other[k:k + draw(st.integers(min_value=0, max_value=512))]
    elif op == "bom":
        data[0:0] = b"\xef\xbb\xbf"
    elif op == "utf16":
        data = bytearray(bytes(data).decode("utf-8", "replace").encode("utf-16"))
    elif op == "nesting":
        depth = draw(st.integers(min_value=min(500, max_depth // 2), max_value=max_depth))
        data = bytearray(b"[" * depth + b"]" * draw(st.sampled_from([0, depth])))
    else:
        data = bytearray(draw(st.sampled_from([b"", b"null", b"[]", b"{}", b"0", b'""', b"\x00" * 16])))
    return bytes(data)


def dumps(doc) -> bytes:
    """JSON bytes of a (possibly very deep) value; falls back to a marker when json cannot encode it."""
    try:
        return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[" * 5000
