"""Real IntelMQ processes (intelmqctl, this run's Redis database): the exchange output loses nothing on stop, and the
collector + parser import a bundle exactly once, also when they are stopped in the middle of it."""
import json
import os
import time

import pytest

from tests.exchange_helpers import bundle_numbers, wait_for, write_trust
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration
N = 6000  # large enough that intelmqctl stop lands mid-stream on a fast machine


def event_json(i):
    return json.dumps({"__type": "Event", "classification.type": "scanner", "source.ip": f"10.0.{i // 250}.{i % 250}",
                       "sharing.tlp": "GREEN", "provenance.origin_hub": "de-hub", "provenance.origin_country": "DE",
                       "extra.n": i})


def clean(inst):
    """Queues and IntelMQ's statistics keys of this test's bots (this run's database is ours alone)."""
    inst.stop()
    inst.clear_queues()
    r = inst.redis()
    for bot_id in inst.bot_ids():
        for key in list(r.scan_iter(f"{bot_id}.*")):
            r.delete(key)


@pytest.fixture()
def tmp_path(intelmq_workdir):
    """A scratch folder the intelmq user can enter (pytest's own tmp_path is 0700 root)."""
    return intelmq_workdir


def test_output_stop_start_loses_and_duplicates_nothing(tmp_path):
    key = b.generate_private_key()
    key_file = tmp_path / "de.pem"
    key_file.write_bytes(b.private_key_pem(key))
    os.chmod(key_file, 0o600)
    trust = write_trust(tmp_path / "trust.yaml", {"de-hub": key})
    spool = tmp_path / "spool"
    runtime = {"exchange-output": {
        "group": "Output", "name": "Exchange to fr-hub", "module": "intelmq.bots.outputs.crossborder.exchange.output",
        "enabled": True, "run_mode": "continuous",
        "parameters": {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(key_file),
                       "spool_dir": str(spool), "max_bundle_events": 1000, "max_bundle_age": 0,
                       "seal_check_interval": 0}}}
    inst = IntelMQInstance(tmp_path / "root", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(tmp_path)
    r = inst.redis()
    inst.clear_queues()
    try:
        r.lpush("exchange-output-queue", *[event_json(i) for i in range(N)])
        inst.start()
        wait_for(lambda: r.llen("exchange-output-queue") < N - 500, 60, "the output to start consuming")
        inst.stop()                      # in the middle of the stream
        left = r.llen("exchange-output-queue")
        assert 0 < left < N, "the stop should fall in the middle of the stream"
        inst.start()
        wait_for(lambda: r.llen("exchange-output-queue") == 0 and r.llen("exchange-output-queue-internal") == 0,
                 300, "the output to drain")  # generous: one fsync per event on a busy disk
        time.sleep(1)
        inst.stop()
        sealed = bundle_numbers(spool / "outbox", trust, "fr-hub")
        spooled = [json.loads(l)["extra.n"] for l in (spool / "spool.jsonl").read_text().splitlines()] \
            if (spool / "spool.jsonl").exists() else []
        got = sealed + spooled
        assert sorted(got) == list(range(N)), f"lost {N - len(set(got))}, duplicated {len(got) - len(set(got))}"
        assert len(sealed) == (N // 1000) * 1000
        assert inst.dumps() == {}
    finally:
        clean(inst)


def test_collector_and_parser_import_once_across_restart(tmp_path):
    key = b.generate_private_key()
    write_trust(tmp_path / "trust.yaml", {"de-hub": key})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    b.write_bundle(inbox, "de-hub", "fr-hub", 1, key, (json.loads(event_json(i)) for i in range(N)))
    b.write_bundle(inbox, "de-hub", "fr-hub", 2, key, (json.loads(event_json(i)) for i in range(N, N + 10)))
    runtime = {
        "exchange-collector": {
            "group": "Collector", "name": "Exchange inbox",
            "module": "intelmq.bots.collectors.crossborder.exchange.collector", "enabled": True,
            "run_mode": "continuous",
            "parameters": {"hub_id": "fr-hub", "trust_store": str(tmp_path / "trust.yaml"),
                           "inbox_dir": str(inbox), "state_dir": str(tmp_path / "state"),
                           "events_per_report": 100, "rate_limit": 2,
                           "destination_queues": {"_default": ["exchange-parser-queue"]}}},
        "exchange-parser": {
            "group": "Parser", "name": "Exchange parser", "module": "intelmq.bots.parsers.crossborder.exchange.parser",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"destination_queues": {"_default": ["it-exchange-out"]}}},
    }
    inst = IntelMQInstance(tmp_path / "root", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(tmp_path)
    r = inst.redis()
    inst.clear_queues()
    r.delete("it-exchange-out")
    try:
        inst.start()
        # restart the collector while it is importing (or just after)
        time.sleep(1.0)
        inst.stop(["exchange-collector"])
        inst.start(["exchange-collector"])
        wait_for(lambda: r.llen("it-exchange-out") >= N + 10 and not list(inbox.glob("*.xbundle")), 120,
                 "the import to finish")
        time.sleep(3)                    # a further collector run must add nothing
        inst.stop()
        out = [json.loads(m) for m in r.lrange("it-exchange-out", 0, -1)]
        numbers = sorted(e["extra.n"] for e in out)
        assert numbers == list(range(N + 10)), f"{len(numbers)} events, {len(set(numbers))} distinct"
        assert all(e["provenance.origin_hub"] == "de-hub" and e["sharing.tlp"] == "GREEN" for e in out)
        assert inst.dumps() == {}
    finally:
        clean(inst)
        r.delete("it-exchange-out")


def test_hybrid_encrypted_exchange_between_real_bots(tmp_path):
    """de-hub's output (Ed25519 + ML-DSA-65, trust store with fr-hub's encryption key) seals an
    encrypted bundle on stop; fr-hub's collector (decryption key) and parser import every event once."""
    import yaml

    from intelmq_crossborder.formats import bundle_crypto as bc
    from intelmq_crossborder.formats import trust_skeleton
    n = 500
    signing = [bc.generate(bc.ED25519), bc.generate(bc.ML_DSA_65)]
    kem = bc.generate(bc.HPKE_KEM)
    (tmp_path / "de-sign.pem").write_bytes(b"".join(bc.private_pem(k) for k in signing))
    (tmp_path / "fr-decrypt.pem").write_bytes(bc.private_pem(kem))
    for name in ("de-sign.pem", "fr-decrypt.pem"):
        os.chmod(tmp_path / name, 0o600)
    (tmp_path / "trust.yaml").write_text(yaml.safe_dump({"version": 1, "peers": {
        "de-hub": trust_skeleton.peer_entry("DE", signing), "fr-hub": trust_skeleton.peer_entry("FR", [kem])}}))
    inbox = tmp_path / "inbox"
    runtime = {
        "exchange-output": {
            "group": "Output", "name": "Exchange to fr-hub", "module": "intelmq.bots.outputs.crossborder.exchange.output",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(tmp_path / "de-sign.pem"),
                           "trust_store": str(tmp_path / "trust.yaml"), "require_encryption": True,
                           "spool_dir": str(tmp_path / "spool"), "outbox_dir": str(inbox),
                           "max_bundle_events": 100000, "max_bundle_age": 0, "seal_on_shutdown": True,
                           "seal_check_interval": 0}},
        "exchange-collector": {
            "group": "Collector", "name": "Exchange inbox",
            "module": "intelmq.bots.collectors.crossborder.exchange.collector", "enabled": True,
            "run_mode": "continuous",
            "parameters": {"hub_id": "fr-hub", "trust_store": str(tmp_path / "trust.yaml"),
                           "decryption_key_file": str(tmp_path / "fr-decrypt.pem"),
                           "inbox_dir": str(inbox), "state_dir": str(tmp_path / "state"), "rate_limit": 2,
                           "destination_queues": {"_default": ["exchange-parser-queue"]}}},
        "exchange-parser": {
            "group": "Parser", "name": "Exchange parser", "module": "intelmq.bots.parsers.crossborder.exchange.parser",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"destination_queues": {"_default": ["it-exchange-out"]}}},
    }
    inbox.mkdir()
    inst = IntelMQInstance(tmp_path / "root", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(tmp_path)
    r = inst.redis()
    inst.clear_queues()
    r.delete("it-exchange-out")
    try:
        r.lpush("exchange-output-queue", *[event_json(i) for i in range(n)])
        inst.start(["exchange-output"])
        wait_for(lambda: r.llen("exchange-output-queue") == 0 and r.llen("exchange-output-queue-internal") == 0,
                 120, "the output to spool every event")
        inst.stop(["exchange-output"])                 # seal_on_shutdown: one encrypted bundle
        (path,) = inbox.glob("*.xbundle")
        assert b"10.0.0.1" not in path.read_bytes()
        inst.start(["exchange-collector", "exchange-parser"])
        wait_for(lambda: r.llen("it-exchange-out") >= n and not list(inbox.glob("*.xbundle")), 120,
                 "the import to finish")
        inst.stop()
        out = [json.loads(m) for m in r.lrange("it-exchange-out", 0, -1)]
        assert sorted(e["extra.n"] for e in out) == list(range(n))
        (archived,) = (tmp_path / "state" / "archive").glob("*.xbundle")
        trust = b.TrustStore.from_file(tmp_path / "trust.yaml")
        with b.open_bundle(archived, trust, "fr-hub", b.DecryptionKeys([kem])) as opened:
            opened.verify_data()
            assert opened.manifest.format_version == "2.0" and opened.decrypted
            assert opened.verified_algorithms == ("ed25519", "ml-dsa-65")
        assert inst.dumps() == {}
    finally:
        clean(inst)
        r.delete("it-exchange-out")
