"""The first pipeline with real IntelMQ bot processes on Redis: file collector -> JSON parser
-> cross-border TLP expert -> file output. Output checked exactly, the bad label dumped."""
import os
import socket

import pytest
import redis
import yaml

from intelmq_crossborder.demo.first_pipeline import FIRST_SAMPLE, run_first_pipeline
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

# (source identity, sharing.tlp, stock tlp after the expert, do_not_disclose_source)
EXPECTED = {
    "http://login.example-bank.test/": ("GREEN", "GREEN", None),
    "192.0.2.10": ("AMBER+STRICT", "RED", None),
    "198.51.100.7": ("CLEAR", "WHITE", None),
    "dropper.example.test": ("AMBER", "AMBER", True),
    "cve-2021-44228": ("CLEAR", "WHITE", None),
    "203.0.113.9": ("RED", "RED", None),
    "203.0.113.77": ("AMBER", "AMBER", None),          # no label: default_tlp AMBER
    "c2.example.test": ("GREEN", "GREEN", None),      # STIX TLP 2.0 GREEN marking id
}


def identity(ev):
    for key in ("source.url", "source.ip", "source.fqdn", "product.vulnerabilities"):
        if key in ev:
            return ev[key]


def rabbitmq_available() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), 1).close()
        return True
    except OSError:
        return False


def require_rabbitmq():
    if not rabbitmq_available():
        if os.environ.get("CI") == "true":
            pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672 (make test starts it)")
        pytest.skip("RabbitMQ is not answering on 127.0.0.1:5672")


@pytest.mark.parametrize("broker", ["redis", pytest.param("amqp", marks=pytest.mark.amqp)])
def test_first_pipeline_real_processes(intelmq_workdir, broker):
    if broker == "amqp":
        require_rabbitmq()
    db = REDIS_DB
    redis.Redis(db=db).delete("json-parser-queue", "tlp-expert-queue", "file-output-queue")
    result = run_first_pipeline(intelmq_workdir, redis_db=db, timeout=120, broker=broker)
    runtime = yaml.safe_load((result["root"] / "etc" / "runtime.yaml").read_text())
    assert runtime["global"]["source_pipeline_broker"] == broker
    assert runtime["global"]["destination_pipeline_broker"] == broker
    if broker == "amqp":  # nothing went through Redis queues
        assert not [k for k in redis.Redis(db=db).keys("*queue*")]
    events = result["events"]
    assert result["input_count"] == 9
    got = {identity(ev): (ev["sharing.tlp"], ev["tlp"], ev.get("sharing.do_not_disclose_source"))
           for ev in events}
    assert got == EXPECTED
    assert len(events) == len(EXPECTED), "no duplicates"
    for ev in events:  # the sample's feed names survive; the file output drops raw by default
        assert ev["feed.name"] in {"national-feed", "misp-export", "csaf-advisories", "stix-import"}
        assert "raw" not in ev and ev["classification.type"]
    dumps = result["dumps"]
    assert list(dumps) == ["tlp-expert"] and len(dumps["tlp-expert"]) == 1
    dumped = dumps["tlp-expert"][0]
    assert "for key 'extra.tlp': 'PURPLE' is not a TLP label; refused" in dumped["traceback"][-1]
    assert '"source.ip": "192.0.2.200"' in dumped["message"]
    assert sum(1 for line in FIRST_SAMPLE.read_text().splitlines() if line.strip()) == 9
