"""The ready pipelines (intelmq_crossborder/pipelines/national-hub, cross-border-hub, csirt and the demo's
consortium/de-hub), deployed as the demo deploys them (placeholders expanded, throwaway
exchange keys and trust stores): `intelmq-crossborder check` and `intelmqctl check` find no
error.  And the CSIRT pipeline runs on RabbitMQ by the one broker switch."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from intelmq_crossborder.formats import bundle

from intelmq_crossborder.demo import consortium
from intelmq_crossborder.policy import audit as audit_trail
from intelmq_crossborder.runtime.instance import PIPELINES_DIR, IntelMQInstance, chown_for_intelmq, load_runtime, prefix_queues

from tests.test_integration_first_pipeline import require_rabbitmq
from tests.isolation import QUEUE_PREFIX, REDIS_DB

CLI = str(Path(sys.executable).parent / "intelmq-crossborder")


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="intelmq-crossborder-pipelines-"))
    path.chmod(0o755)
    yield path
    if not os.environ.get("CROSSBORDER_KEEP_WORKDIR"):   # set it to look at the logs of a failed run
        shutil.rmtree(path, ignore_errors=True)


def test_every_member_config_is_shipped_and_documented():
    members = consortium.default_members()
    configs = {m.config.relative_to(PIPELINES_DIR).as_posix() for m in members}
    assert configs == {"national-hub", "cross-border-hub", "csirt", "consortium/de-hub"}
    docs = (Path(__file__).resolve().parents[1] / "docs" / "pipelines.md").read_text()
    for config in configs:
        assert f"`{config}/`" in docs
        runtime = yaml.safe_load((PIPELINES_DIR / config / "runtime.yaml").read_text())
        for bot_id, conf in runtime.items():
            if bot_id == "global":
                continue
            # scheduled bots are disabled: `intelmqctl start` leaves them to cron / systemd
            assert conf["enabled"] is (conf["run_mode"] == "continuous"), bot_id
            agreements = conf["parameters"].get("agreements_dir")
            if agreements:
                directory = Path(agreements.replace("${PIPELINES_DIR}", str(PIPELINES_DIR)))
                paths = set(conf["parameters"]["destination_queues"]) - {"_default"}
                assert paths == {p.stem for p in directory.glob("*.yaml")}, (config, bot_id)


def test_intelmq_crossborder_check_and_intelmqctl_check_find_no_error(workdir, consortium_dbs):
    cons = consortium.Consortium(workdir, dbs=consortium_dbs).setup()
    for name, inst in cons.instances.items():
        proc = subprocess.run([CLI, "check", str(inst.etc / "runtime.yaml")], capture_output=True, text=True)
        assert proc.returncode == 0 and "No errors found." in proc.stdout, (name, proc.stderr)
        proc = inst.ctl("check", check=False)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        report = json.loads(proc.stdout)
        errors = [line for line in report["lines"] if line[0] == "error"]
        assert report["status"] == "success" and errors == [], (name, errors)


def test_check_fails_without_the_trust_store(workdir, consortium_dbs):
    """The check is not vacuous: a deployment without its trust store is refused."""
    cons = consortium.Consortium(workdir, dbs=consortium_dbs).setup()
    inst = cons.instances["at-csirt"]
    (inst.etc / "exchange" / "trust.yaml").unlink()
    proc = subprocess.run([CLI, "check", str(inst.etc / "runtime.yaml")], capture_output=True, text=True)
    assert proc.returncode == 1 and "bot exchange-collector: Parameter trust_store" in proc.stderr


U1, U2, U3, U4 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
CSIRT_EVENTS = [
    {"classification.taxonomy": "information-gathering", "classification.type": "scanner",
     "source.ip": "203.0.113.50", "sharing.tlp": "GREEN", "provenance.origin_hub": "at-hub",
     "provenance.origin_country": "AT", "provenance.hub_path": "at-hub", "provenance.event_uuid": U1,
     "extra.note": "to be removed for the operator"},
    {"classification.taxonomy": "fraud", "classification.type": "phishing",
     "source.url": "http://login.example-bank.test/", "sharing.tlp": "CLEAR", "provenance.origin_hub": "at-hub",
     "provenance.origin_country": "AT", "provenance.hub_path": "at-hub", "provenance.event_uuid": U2},
    {"classification.taxonomy": "intrusions", "classification.type": "system-compromise",
     "source.ip": "192.0.2.44", "sharing.tlp": "AMBER", "comment": "customer X", "provenance.origin_hub": "de-hub",
     "provenance.origin_country": "DE", "provenance.hub_path": "de-hub,at-hub", "provenance.event_uuid": U3},
    {"classification.taxonomy": "intrusions", "classification.type": "system-compromise",   # a loop
     "source.ip": "192.0.2.45", "sharing.tlp": "GREEN", "provenance.origin_hub": "at-csirt",
     "provenance.hub_path": "at-csirt,at-hub", "provenance.event_uuid": U4},
]


@pytest.mark.integration
@pytest.mark.amqp
def test_csirt_pipeline_on_rabbitmq(workdir):
    """intelmq_crossborder/pipelines/csirt on IntelMQ's AMQP broker (RabbitMQ 127.0.0.1:5672, guest/guest):
    a signed bundle from at-hub imported by the scheduled collector, routed, redacted, written."""
    require_rabbitmq()
    root = workdir / "at-csirt"
    runtime = load_runtime(PIPELINES_DIR / "csirt" / "runtime.yaml", root)
    runtime["provenance-inbound"]["parameters"]["redis_cache_db"] = 8     # bot state stays on Redis
    # no decryption key (init writes one): this CSIRT reads bundles signed and in clear
    runtime["exchange-collector"]["parameters"]["decryption_key_file"] = ""
    # RabbitMQ queue names are global (others' tests use tlp-expert-queue too): a prefix of our own
    prefix_queues(runtime, QUEUE_PREFIX + "at-csirt.")
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB, broker="amqp").setup()
    written = yaml.safe_load((inst.etc / "runtime.yaml").read_text())["global"]
    assert written["source_pipeline_broker"] == written["destination_pipeline_broker"] == "amqp"
    key = bundle.generate_private_key()
    (inst.etc / "exchange").mkdir(parents=True, exist_ok=True)
    (inst.etc / "exchange" / "trust.yaml").write_text(yaml.safe_dump({"version": 1, "peers": {"at-hub": {
        "country": "AT", "keys": [{"algorithm": "ed25519", "public_key": bundle.public_key_b64(key)}]}}}))
    inbox = root / "var" / "spool" / "exchange-inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for sub in ("output", "audit"):
        (root / "var" / "lib" / sub).mkdir(parents=True, exist_ok=True)
    import redis
    r = redis.Redis(db=REDIS_DB)
    for name in r.scan_iter(match="crossborder:fingerprint:*"):
        r.delete(name)
    inst.clear_queues()
    bundle.write_bundle(inbox, "at-hub", "at-csirt", 1, key, CSIRT_EVENTS)
    chown_for_intelmq(root)
    out = {name: root / "var" / "lib" / "output" / f"{name}.jsonl" for name in ("soc", "at-grid-operator")}

    def lines(name):
        return [json.loads(l) for l in out[name].read_text().splitlines()] if out[name].exists() else []
    try:
        inst.ctl("start")
        inst.ctl("start", "exchange-collector", check=False)
        inst.wait_until_drained(timeout=120, done=lambda: not list(inbox.glob("*.xbundle"))
                                and len(lines("soc")) == 3 and len(lines("at-grid-operator")) == 2)
    finally:
        inst.stop()
        inst.clear_queues()                               # deletes our prefixed RabbitMQ queues
    soc = {e["provenance.event_uuid"]: e for e in lines("soc")}
    operator = {e["provenance.event_uuid"]: e for e in lines("at-grid-operator")}
    assert set(soc) == {U1, U2, U3}            # e-4 passed through at-csirt already: dropped
    assert set(operator) == {U1, U3}               # phishing is not among the operator's types
    assert soc[U1]["extra.note"] and soc[U3]["comment"] == "customer X"
    assert not any(k.startswith("extra.") or k == "comment" for e in operator.values() for k in e)
    assert {e["sharing.agreement"] for e in operator.values()} == {"at-grid-operator"}
    assert not [k for k in r.keys("*queue*")]            # nothing went through Redis queues
    audit = list(audit_trail.read_records(root / "var" / "lib" / "audit" / "router-audit.jsonl"))
    assert sorted((a["event_uuid"], a["recipient"], a["allowed"]) for a in audit) == [
        (U1, "at-grid-operator", True), (U1, "soc", True), (U2, "at-grid-operator", False),
        (U2, "soc", True), (U3, "at-grid-operator", True), (U3, "soc", True)]
