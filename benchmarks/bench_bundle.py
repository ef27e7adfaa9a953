#!/usr/bin/env python3
"""Benchmark of the exchange bundles: write, verify and import N events (default 1,000,000).

    .venv/bin/python benchmarks/bench_bundle.py              # 1,000,000 events
    .venv/bin/python benchmarks/bench_bundle.py --quick      # 100,000 events
    .venv/bin/python benchmarks/bench_bundle.py --events 250000 --keep

Stages (each streaming, events generated on the fly, never held in a list):

write    events -> JSON lines -> gzip -> signed bundle (BundleWriter)
verify   signature, trust, recipient, SHA-256 and event count (bundle verify)
import   the collector's Importer: verify again, check sequence, hand out chunks
         of 1000 lines with a state commit after each, decode every line (json)
parse    a sample of the import turned into IntelMQ Event objects on the
         cross-border harmonization (what the exchange parser does per line)

Baseline, measured in the same run: the same events written to and read from a
plain gzip JSON-lines file without manifest, signature, tar or state.  The
ratios show what the bundle machinery costs on top of compression itself.

Post-quantum (issue 18): write, verify and import run twice on the same events,
once signed with Ed25519 only (format 1.0) and once signed with Ed25519 +
ML-DSA-65 and encrypted to the recipient (HPKE MLKEM768-X25519, format 2.0);
the second is reported as a ratio to the first ("cost x"; the two alternate,
median of --repeat runs each, so both see the same load).  A last pass traces
the Python heap (tracemalloc) of the hybrid + encrypted stages at a tenth of
the events and at all of them: streaming means the same peak for both.

Memory: resident set size (RSS) sampled every 20 ms by a thread; peak per stage
and the RSS at 10%, 50% and 100% of the events of each stage.  Flat numbers
mean streaming: the RSS does not grow with the bundle.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intelmq_crossborder.formats import bundle as b  # noqa: E402
from intelmq_crossborder.formats import bundle_crypto as bc  # noqa: E402
from intelmq_crossborder.exchange import importer as x  # noqa: E402
def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.02)

    def __enter__(self):
        self.peak = rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def make_events(n: int):
    for i in range(n):
        yield {
            "classification.taxonomy": "malicious-code", "classification.type": "infected-system",
            "malware.name": "mirai", "source.ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "source.port": 1024 + i % 60000, "source.asn": 64496 + i % 16,
            "source.geolocation.cc": "DE", "time.source": "2026-11-20T01:02:03+00:00",
            "time.observation": "2026-11-20T02:00:00+00:00", "feed.name": "bench-feed",
            "sharing.tlp": "GREEN", "provenance.origin_hub": "de-hub", "provenance.origin_country": "DE",
            "provenance.event_uuid": f"00000000-0000-4000-8000-{i:012d}", "extra.seq": i,
        }


def checkpoints(n):
    return {max(1, n // 10): "10%", max(1, n // 2): "50%", n: "100%"}


#: machine-readable rows of this run (--json)
ROWS = []


def report(name, n, seconds, sampler, marks, baseline=None):
    rate = n / seconds if seconds else float("inf")
    ROWS.append({"stage": {"base-w": "bundle baseline: gzip JSON lines, no signing",
                           "base-r": "bundle baseline: read + gunzip"}.get(name, f"bundle {name}"), "rate": rate, "unit": "events/s", "events_per_s": rate,
                 "peak_mib": sampler.peak, "events": n,
                 "baseline": {"write": "gzip JSON lines to a file, no signing",
                              "verify": "read + gunzip the same file", "import": "read + gunzip the same file"
                              }.get(name, "") if baseline else "",
                 "baseline_rate": n / baseline if baseline else None,
                 "ratio": baseline / seconds if baseline and seconds else None})
    line = f"{name:<8} {n:>10,} events {seconds:8.2f} s {rate:>12,.0f} events/s  peak RSS {sampler.peak:7.1f} MiB"
    if baseline:
        line += f"  ratio to baseline {seconds / baseline:5.2f}x"
    print(line)
    if marks:
        print("         RSS at " + ", ".join(f"{label} ({count:,}): {mib:.1f} MiB" for count, label, mib in marks))
    return rate


def pq_keys(mode: str = "pq"):
    """(signing keys, trust store, decryption keys): ``pq`` hybrid signing keys, the recipient's
    HPKE key, the trust store requiring both signatures; ``ed`` the Ed25519 key alone, in clear."""
    signing = b.SigningKeys([bc.generate(bc.ED25519)] + ([bc.generate(bc.ML_DSA_65)] if mode == "pq" else []))
    kem = bc.generate(bc.HPKE_KEM)
    peers = {"de-hub": {"country": "DE", "keys": [
        {"algorithm": a, "public_key": bc.public_b64(k)} for a, k in signing.keys.items()]}}
    if mode == "pq":
        peers["de-hub"]["signature_algorithms"] = ["ed25519", "ml-dsa-65"]
        peers["fr-hub"] = {"keys": [{"algorithm": bc.HPKE_KEM, "public_key": bc.public_b64(kem)}]}
    trust = b.TrustStore.from_dict({"version": 1, "peers": peers})
    return signing, trust, (b.DecryptionKeys([kem]) if mode == "pq" else None)


def pq_stages(n: int, work: Path, keys, trace: bool = False) -> dict:
    """write, verify, import of n events with ``keys`` (:func:`pq_keys`): seconds (or, with
    ``trace``, tracemalloc peaks in MiB) per stage."""
    import shutil
    import tracemalloc
    signing, trust, decrypt = keys
    encrypt_to = trust.encryption_key("fr-hub") if "fr-hub" in trust.peers else None
    for sub in ("pq-outbox", "pq-inbox", "pq-state", "pq-quarantine"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir()
    out = {}

    def stage(name, fn):
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        if trace:
            out[name] = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        else:
            out[name] = seconds
        return result

    def write():
        writer = b.BundleWriter(work / "pq-outbox", "de-hub", "fr-hub", 1, signing, encrypt_to=encrypt_to)
        for ev in make_events(n):
            writer.write_event(ev)
        return writer.close()
    path = stage("write", write)
    manifest = stage("verify", lambda: b.verify_bundle(path, trust, "fr-hub", decrypt))
    assert manifest.event_count == n and manifest.format_version == ("2.0" if encrypt_to else "1.0")
    os.replace(path, work / "pq-inbox" / path.name)
    seen = [0]

    def emit(lines, m, first, chunk):
        for line in lines:
            json.loads(line)
        seen[0] += len(lines)

    importer = x.Importer("fr-hub", trust, work / "pq-state", work / "pq-quarantine", None, chunk_lines=1000,
                          decryption_keys=decrypt)
    results = stage("import", lambda: importer.run(work / "pq-inbox", emit))
    assert [r.status for r in results] == ["imported"] and seen[0] == n, results
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="number of events (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    parser.add_argument("--parse-sample", type=int, default=20_000,
                        help="events turned into IntelMQ Event objects in the parse stage (default 20,000)")
    parser.add_argument("--dir", help="work folder (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the bundle")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating Ed25519-only / hybrid + encrypted runs for the cost ratio (default 3)")
    parser.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (for make bench / benchmarks/run_all.py)")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.events
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    work.mkdir(parents=True, exist_ok=True)
    key = b.generate_private_key()
    trust = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"country": "DE", "keys": [
        {"public_key": b.public_key_b64(key)}]}}})
    print(f"bench_bundle: {n:,} events, work folder {work}, start RSS {rss_mib():.1f} MiB")
    marks_at = checkpoints(n)

    # --- baseline: plain gzip JSON lines
    plain = work / "baseline.jsonl.gz"
    with Sampler() as s:
        t0 = time.perf_counter()
        with gzip.open(plain, "wb", compresslevel=6) as fh:
            for ev in make_events(n):
                fh.write(json.dumps(ev, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
        base_write = time.perf_counter() - t0
    report("base-w", n, base_write, s, None)
    with Sampler() as s:
        t0 = time.perf_counter()
        count = 0
        with gzip.open(plain, "rb") as fh:
            for line in fh:
                json.loads(line)
                count += 1
        base_read = time.perf_counter() - t0
    assert count == n
    report("base-r", n, base_read, s, None)
    plain.unlink()

    # --- write
    outbox = work / "outbox"
    outbox.mkdir(exist_ok=True)
    marks = []
    with Sampler() as s:
        t0 = time.perf_counter()
        writer = b.BundleWriter(outbox, "de-hub", "fr-hub", 1, key)
        for i, ev in enumerate(make_events(n), 1):
            writer.write_event(ev)
            if i in marks_at:
                marks.append((i, marks_at[i], rss_mib()))
        path = writer.close()
        t_write = time.perf_counter() - t0
    rates = {"write": report("write", n, t_write, s, marks, base_write)}
    print(f"         bundle {path.name}: {path.stat().st_size / 2**20:.1f} MiB")

    # --- verify
    with Sampler() as s:
        t0 = time.perf_counter()
        manifest = b.verify_bundle(path, trust, "fr-hub")
        t_verify = time.perf_counter() - t0
    assert manifest.event_count == n
    rates["verify"] = report("verify", n, t_verify, s, None, base_read)

    # --- import (collector importer + json decode of every line)
    inbox = work / "inbox"
    inbox.mkdir(exist_ok=True)
    os.replace(path, inbox / path.name)
    marks, seen = [], [0]

    def emit(lines, m, first, chunk):
        for line in lines:
            json.loads(line)
        seen[0] += len(lines)
        for mark, label in marks_at.items():
            if first < mark <= first + len(lines):
                marks.append((mark, label, rss_mib()))

    importer = x.Importer("fr-hub", trust, work / "state", work / "quarantine",
                          (work / "archive") if args.keep else None, chunk_lines=1000)
    with Sampler() as s:
        t0 = time.perf_counter()
        results = importer.run(inbox, emit)
        t_import = time.perf_counter() - t0
    assert [r.status for r in results] == ["imported"] and seen[0] == n, results
    rates["import"] = report("import", n, t_import, s, marks, base_read)

    # --- parse sample into IntelMQ events
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    harm = merged_harmonization()
    sample = min(args.parse_sample, n)
    with Sampler() as s:
        t0 = time.perf_counter()
        for ev in make_events(sample):
            event = Event(harmonization=harm)
            for k, v in json.loads(json.dumps(ev)).items():
                if not event.add(k, v, sanitize=False, raise_failure=False):
                    event.add(k, v)
        t_parse = time.perf_counter() - t0
    rates["parse"] = report("parse", sample, t_parse, s, None)

    # --- hybrid signatures + encryption, as a ratio to Ed25519 only: the two alternate, each
    # stage's median of --repeat runs (the machine is shared: alternating keeps both in the same weather)
    keys = pq_keys()
    ed_keys = pq_keys("ed")
    runs = {"ed": [], "pq": []}
    with Sampler() as s:
        for _ in range(args.repeat):
            runs["ed"].append(pq_stages(n, work, ed_keys))
            runs["pq"].append(pq_stages(n, work, keys))
    import statistics
    ed = {k: statistics.median(r[k] for r in runs["ed"]) for k in ("write", "verify", "import")}
    pq = {k: statistics.median(r[k] for r in runs["pq"]) for k in ("write", "verify", "import")}
    print(f"hybrid Ed25519 + ML-DSA-65, encrypted (HPKE MLKEM768-X25519 / AES-256-GCM) against Ed25519 only, "
          f"{n:,} events, median of {args.repeat} alternating runs each, peak RSS {s.peak:.1f} MiB:")
    for name in ("write", "verify", "import"):
        rate = n / pq[name]
        ratio = pq[name] / ed[name]
        print(f"  pq {name:<7} {pq[name]:8.2f} s {rate:>12,.0f} events/s  cost {ratio:5.2f}x the Ed25519-only {name}")
        ROWS.append({"stage": f"bundle {name}, hybrid signed + encrypted", "rate": rate, "unit": "events/s",
                     "events_per_s": rate, "peak_mib": s.peak, "events": n,
                     "baseline": f"the same {name} signed with Ed25519 only, in clear",
                     "baseline_rate": n / ed[name], "ratio": ed[name] / pq[name]})
    small = max(1, n // 10)
    heap_small = pq_stages(small, work, keys, trace=True)
    heap_full = pq_stages(n, work, keys, trace=True)
    print("  Python heap peak (tracemalloc), hybrid + encrypted: " + ", ".join(
        f"{name} {heap_small[name]:.1f} MiB at {small:,} / {heap_full[name]:.1f} MiB at {n:,} events"
        for name in ("write", "verify", "import")))
    flat = all(heap_full[k] <= 2 * heap_small[k] + 1 for k in heap_full)
    print(f"  memory flat (peak at {n:,} events <= 2x the peak at {small:,} + 1 MiB): {'yes' if flat else 'NO'}")
    ROWS.append({"stage": f"bundle hybrid + encrypted, Python heap peak (tracemalloc) at {n:,} events",
                 "unit": "MiB", "rate": max(heap_full.values()), "peak_mib": max(heap_full.values()), "events": n,
                 "baseline": f"the same at {small:,} events", "baseline_rate": max(heap_small.values()),
                 "peaks_small": heap_small, "peaks_full": heap_full, "flat": flat})
    print(f"summary: write {rates['write']:,.0f}/s, verify {rates['verify']:,.0f}/s, "
          f"import {rates['import']:,.0f}/s, IntelMQ Event construction {rates['parse']:,.0f}/s "
          f"(the parser bot's ceiling per instance); hybrid + encrypted costs "
          + ", ".join(f"{k} {pq[k] / ed[k]:.2f}x" for k in ("write", "verify", "import")))
    if not args.dir and not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=1))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
