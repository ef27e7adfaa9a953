"""Unit tests of the batched fan-out on a real IntelMQ Redis pipeline (Redis db 11)."""
import collections
import logging
import uuid

import pytest
import redis
from intelmq.lib import pipeline

from intelmq_crossborder import fanout

REDIS_DB = 11


class FakeBot:
    """The attributes of intelmq.lib.bot.Bot that BatchSender reads, by their mangled names."""

    load_balance = False

    def __init__(self, src, dst):
        self._Bot__source_pipeline = src
        self._Bot__destination_pipeline = dst
        self._Bot__current_message = {"x": 1}
        self._Bot__message_counter = {"path": collections.defaultdict(int)}
        self.sent, self.acked = [], 0

    def send_message(self, message, path="_default"):
        self.sent.append((path, message))

    def acknowledge_message(self):
        self.acked += 1


@pytest.fixture
def queues():
    prefix = f"test-fanout-{uuid.uuid4()}"
    names = {"in": f"{prefix}-in", "a": f"{prefix}-a", "b1": f"{prefix}-b1", "b2": f"{prefix}-b2"}
    r = redis.Redis(db=REDIS_DB)
    yield r, names
    r.delete(*names.values(), names["in"] + "-internal")


def make_pipelines(names):
    args = {"source_pipeline_db": REDIS_DB, "destination_pipeline_db": REDIS_DB,
            "source_pipeline_host": "127.0.0.1", "destination_pipeline_host": "127.0.0.1"}
    log = logging.getLogger("test-fanout")
    src = pipeline.Redis(logger=log, pipeline_args=args)
    src.set_queues(names["in"], "source")
    src.connect()
    dst = pipeline.Redis(logger=log, pipeline_args=args)
    dst.set_queues({"a": [names["a"]], "b": [names["b1"], names["b2"]]}, "destination")
    dst.connect()
    return src, dst


@pytest.mark.parametrize("mode", ["pipeline", "script"])
def test_one_round_trip_sends_all_and_acknowledges(queues, mode):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b'{"__type": "Event"}')
    assert src.receive() == '{"__type": "Event"}'
    assert r.llen(names["in"] + "-internal") == 1
    bot = FakeBot(src, dst)
    sender = fanout.BatchSender(bot, mode)
    assert sender.available()
    sender.send_and_acknowledge([("a", '{"n": 1}'), ("b", '{"n": 2}')])
    assert r.lrange(names["a"], 0, -1) == [b'{"n": 1}']
    assert r.lrange(names["b1"], 0, -1) == [b'{"n": 2}'] and r.lrange(names["b2"], 0, -1) == [b'{"n": 2}']
    assert r.llen(names["in"] + "-internal") == 0
    assert bot._Bot__current_message is None and src._has_message is False
    assert dict(bot._Bot__message_counter["path"]) == {"a": 1, "b": 1}
    assert (sender.batched, sender.fallback) == (1, 0)
    # the next message can be received normally
    r.lpush(names["in"], b'{"__type": "Event", "n": 3}')
    assert src.receive() == '{"__type": "Event", "n": 3}'


@pytest.mark.parametrize("mode", ["pipeline", "script"])
def test_next_message_is_prefetched_into_the_internal_queue(queues, monkeypatch, mode):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"first", b"second", b"third")     # "first" is the oldest
    assert src.receive() == "first"
    bot = FakeBot(src, dst)
    sender = fanout.BatchSender(bot, mode)
    sender.send_and_acknowledge([("a", "copy of first")])
    assert r.lrange(names["in"] + "-internal", 0, -1) == [b"second"]
    assert r.lrange(names["in"], 0, -1) == [b"third"]
    # IntelMQ's receive finds it with LINDEX and does not need BLMOVE
    monkeypatch.setattr(src, "_blmove", lambda *a: pytest.fail("BLMOVE used"))
    assert src.receive() == "second"
    sender.send_and_acknowledge([])
    assert src.receive() == "third"
    sender.send_and_acknowledge([])
    assert r.llen(names["in"]) == 0 and r.llen(names["in"] + "-internal") == 0
    assert r.lrange(names["a"], 0, -1) == [b"copy of first"]


def test_one_command(queues, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"{}")
    src.receive()
    sent = []
    original = dst.pipe.execute_command

    def counting(*args, **kw):
        sent.append(args[0])
        return original(*args, **kw)
    monkeypatch.setattr(dst.pipe, "execute_command", counting)
    monkeypatch.setattr(src.pipe, "execute_command", lambda *a, **k: pytest.fail("command on the source client"))
    fanout.BatchSender(FakeBot(src, dst), "script").send_and_acknowledge([("a", "1"), ("b", "2")])
    assert sent == ["EVALSHA"] or sent == ["EVALSHA", "EVAL"]       # EVAL once if the script was not loaded
    assert r.llen(names["b2"]) == 1 and r.llen(names["in"] + "-internal") == 0


def test_transaction_when_scripts_are_disabled(queues, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"{}")
    src.receive()
    sender = fanout.BatchSender(FakeBot(src, dst), "script")

    class Disabled:
        def __call__(self, **kw):
            raise redis.exceptions.ResponseError("ERR unknown command 'EVALSHA'")
    monkeypatch.setattr(dst.pipe, "register_script", lambda text: Disabled())
    calls = []
    original = redis.client.Pipeline.execute

    def counting(self, *a, **k):
        calls.append(len(self.command_stack))
        return original(self, *a, **k)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    sender.send_and_acknowledge([("a", "1"), ("b", "2")])
    assert calls == [4] and not sender.use_script      # 3 LPUSH + 1 RPOP in one MULTI/EXEC
    assert r.lrange(names["b1"], 0, -1) == [b"2"] and r.llen(names["in"] + "-internal") == 0


def test_unknown_path_sends_nothing(queues):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"{}")
    src.receive()
    with pytest.raises(Exception, match="no destination queues for path 'c'"):
        fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge([("a", "1"), ("c", "2")])
    assert r.llen(names["a"]) == 0 and r.llen(names["in"] + "-internal") == 1


def test_pipeline_is_one_write(queues, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"{}")
    src.receive()
    calls = []
    original = redis.client.Pipeline.execute

    def counting(self, *a, **k):
        calls.append([c[0][0] for c in self.command_stack])
        return original(self, *a, **k)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    monkeypatch.setattr(dst.pipe, "execute_command", lambda *a, **k: pytest.fail("single command sent"))
    fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge([("a", "1"), ("b", "2")])
    assert calls == [["LPUSH", "LPUSH", "LPUSH", "RPOP", "RPOPLPUSH"]]   # sends before the acknowledgement


@pytest.mark.parametrize("mode", ["pipeline", "transaction"])
def test_other_modes(queues, mode):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"first", b"second")
    assert src.receive() == "first"
    sender = fanout.BatchSender(FakeBot(src, dst), mode)
    sender.send_and_acknowledge([("a", "1"), ("b", "2")])
    assert r.lrange(names["a"], 0, -1) == [b"1"] and r.lrange(names["b2"], 0, -1) == [b"2"]
    internal = r.lrange(names["in"] + "-internal", 0, -1)
    assert internal == ([b"second"] if mode == "pipeline" else [])
    assert src.receive() == "second"


def test_bad_mode():
    with pytest.raises(ValueError, match="fan-out mode must be one of"):
        fanout.BatchSender(object(), "carrier-pigeon")


def test_script_sends_nothing_when_there_is_nothing_to_acknowledge(queues):
    r, names = queues
    src, dst = make_pipelines(names)
    r.lpush(names["in"], b"waiting")
    with pytest.raises(Exception, match="could not pop the message from the internal queue"):
        fanout.BatchSender(FakeBot(src, dst), "script").send_and_acknowledge([("a", "1")])
    assert r.llen(names["a"]) == 0 and r.lrange(names["in"], 0, -1) == [b"waiting"]


def test_fallback_when_not_redis():
    bot = FakeBot(object(), object())
    sender = fanout.BatchSender(bot)
    assert not sender.available()
    sender.send_and_acknowledge([("a", "raw-a")], make_message=lambda raw: raw.upper())
    assert bot.sent == [("a", "RAW-A")] and bot.acked == 1 and sender.fallback == 1


def test_fallback_when_intelmq_renamed_internals(queues):
    r, names = queues
    src, dst = make_pipelines(names)

    class Renamed:
        load_balance = False
    assert not fanout.BatchSender(Renamed()).available()


def test_serialize_event_matches_intelmq():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    h = merged_harmonization()
    flat = {"source.ip": "192.0.2.1", "sharing.tlp": "GREEN", "extra.a": {"b": [1]}}
    assert fanout.serialize_event(flat) == Event(dict(flat), harmonization=h).serialize()


def test_serialize_empty_event():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    assert fanout.serialize_event({}) == Event({}, harmonization=merged_harmonization()).serialize()
