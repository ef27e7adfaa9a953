"""Real IntelMQ process: the Elasticsearch output dumps a refused document with the server's reason,
indexes the rest, and the contributions store counts the dump as an invalid event."""
import json
import tempfile
from pathlib import Path

import pytest

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from tests.isolation import REDIS_DB
from intelmq_crossborder.testing.polling import wait_until

BOT_ID = "es-output-it"


def event(i, **extra):
    ev = {"__type": "Event", "classification.type": "scanner", "source.ip": f"192.0.2.{i}",
          "time.observation": "2026-11-20T10:00:00+00:00", "sharing.tlp": "GREEN", "sharing.retention_days": 30,
          "provenance.originator": "cert-it", "provenance.origin_hub": "hub-at",
          "provenance.fingerprint": f"{i:064x}"}
    ev.update(extra)
    return json.dumps(ev)


@pytest.mark.integration
def test_real_process_dumps_refused_document_with_reason():
    with FakeElasticsearch() as es, tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        root = Path(tmp) / "intelmq"
        runtime = {
            "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                       "error_max_retries": 0, "error_retry_delay": 1},
            BOT_ID: {"group": "Output", "name": "ES", "module": "intelmq.bots.outputs.crossborder.elasticsearch.output",
                     "enabled": True, "run_mode": "continuous",
                     "parameters": {"hosts": [es.url], "bulk_size": 10, "bulk_max_seconds": 0.5,
                                    "journal_redis_db": REDIS_DB, "destination_queues": {}}},
        }
        inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
        chown_for_intelmq(root)
        r = inst.redis()
        queue = f"{BOT_ID}-queue"
        journal = f"intelmq-crossborder:es-journal:{BOT_ID}"
        r.delete(queue, f"{queue}-internal", journal)
        r.lpush(queue, event(1), event(2, **{"source.geolocation.latitude": 95.0,
                                             "source.geolocation.longitude": 10.0}), event(3))
        inst.start([BOT_ID])
        try:
            wait_until(lambda: len(es.all_docs()) == 2 and inst.dumps(), 60, "two documents indexed and one dumped")
        finally:
            inst.stop([BOT_ID])
        assert sorted(es.all_docs()) == [f"{1:064x}", f"{3:064x}"]
        assert r.llen(journal) == 0 and r.llen(queue) == 0
        dumps = inst.dumps()
        (entry,) = dumps[BOT_ID]
        assert json.loads(entry["message"])["provenance.fingerprint"] == f"{2:064x}"
        reason = "".join(entry["traceback"])
        assert "the lake refused the document (status 400): document_parsing_exception" in reason
        assert "illegal latitude value [95.0]" in reason
        # the contributions store reads the dump as one invalid event of cert-it
        conn = cb.connect(Path(tmp) / "stats.sqlite")
        assert cb.import_dumps(conn, [inst.log_dir]) == (1, 0)
        (row,) = cb.contributions(conn)
        assert (row.contributor, row.hub, row.invalid) == ("cert-it", "hub-at", 1)
