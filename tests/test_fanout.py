"""Unit tests of the batched fan-out on a real IntelMQ Redis pipeline (this run's Redis database)."""
import collections
import logging
import uuid

import pytest
import redis
from intelmq.lib import pipeline

from intelmq_crossborder.runtime import fanout
from tests.isolation import REDIS_DB, redis_dbs


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

def receive_next(r, src, names, raw):
    """Put ``raw`` in the source queue and receive it as IntelMQ does (into the internal queue)."""
    r.lpush(names["in"], raw)
    return src.receive()


@pytest.mark.parametrize("mode", ["pipeline", "script"])
def test_one_round_trip_sends_all_and_acknowledges(queues, mode):
    r, names = queues
    src, dst = make_pipelines(names)
    assert receive_next(r, src, names, b'{"__type": "Event"}') == '{"__type": "Event"}'
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
    assert receive_next(r, src, names, b'{"__type": "Event", "n": 3}') == '{"__type": "Event", "n": 3}'


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
    receive_next(r, src, names, b"{}")
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
    receive_next(r, src, names, b"{}")
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
    receive_next(r, src, names, b"{}")
    with pytest.raises(Exception, match="no destination queues for path 'c'"):
        fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge([("a", "1"), ("c", "2")])
    assert r.llen(names["a"]) == 0 and r.llen(names["in"] + "-internal") == 1


def test_pipeline_is_one_write(queues, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    receive_next(r, src, names, b"{}")
    packed, writes, reads = [], [], []
    conn_class = redis.connection.Connection
    pack, send, read = conn_class.pack_commands, conn_class.send_packed_command, conn_class.read_response

    def packing(self, commands):
        commands = list(commands)
        packed.append([c[0] for c in commands])
        return pack(self, commands)
    monkeypatch.setattr(conn_class, "pack_commands", packing)
    monkeypatch.setattr(conn_class, "send_packed_command", lambda self, *a, **k: writes.append(1) or send(self, *a, **k))
    monkeypatch.setattr(conn_class, "read_response", lambda self, *a, **k: reads.append(1) or read(self, *a, **k))
    monkeypatch.setattr(conn_class, "send_command", lambda *a, **k: pytest.fail("single command sent"))
    monkeypatch.setattr(dst.pipe, "execute_command", lambda *a, **k: pytest.fail("single command sent"))
    fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge([("a", "1"), ("b", "2")])
    monkeypatch.undo()
    # sends before the acknowledgement; then the move of the next message and the read of it
    assert packed == [["LPUSH", "LPUSH", "LPUSH", "RPOP", "RPOPLPUSH", "LINDEX"]]
    assert len(writes) == 1 and len(reads) == 6       # one write, every reply read
    assert r.lrange(names["b2"], 0, -1) == [b"2"] and r.llen(names["in"] + "-internal") == 0


def test_pipeline_lost_connection_fails_once_and_is_not_retried(queues, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    receive_next(r, src, names, b"first")
    writes = []
    conn_class = redis.connection.Connection
    send = conn_class.send_packed_command

    def lost(self, *a, **k):
        raise redis.exceptions.ConnectionError("Connection closed by server.")
    monkeypatch.setattr(conn_class, "send_packed_command", lambda self, *a, **k: writes.append(1) or send(self, *a, **k))
    monkeypatch.setattr(conn_class, "read_response", lost)     # the commands ran, the replies are lost
    bot = FakeBot(src, dst)
    with pytest.raises(fanout.PipelineError, match="Connection closed by server"):
        fanout.BatchSender(bot).send_and_acknowledge([("a", "1")])
    monkeypatch.undo()
    assert writes == [1]                                  # not sent a second time
    assert r.lrange(names["a"], 0, -1) == [b"1"] and r.llen(names["in"] + "-internal") == 0
    assert bot._Bot__current_message == {"x": 1} and src._has_message is True    # IntelMQ sees the failure
    assert all(c._sock is None for c in dst.pipe.connection_pool._available_connections)   # dropped


def test_pipeline_error_reply_raises_after_every_reply_is_read(queues):
    r, names = queues
    src, dst = make_pipelines(names)
    receive_next(r, src, names, b"first")
    r.set(names["b1"], "not a list")
    try:
        with pytest.raises(fanout.PipelineError, match=r"Command # 2 \(LPUSH .*WRONGTYPE"):
            fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge([("a", "1"), ("b", "2")])
        # as a redis-py pipeline: the other commands ran, and the connection is in step
        assert r.lrange(names["a"], 0, -1) == [b"1"] and r.lrange(names["b2"], 0, -1) == [b"2"]
        assert r.llen(names["in"] + "-internal") == 0
        assert dst.pipe.ping() is True and dst.pipe.llen(names["a"]) == 1
    finally:
        r.delete(names["b1"])


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


# --- guarded sends (the provenance expert's de-duplication in the same round trip) -------------
@pytest.fixture(scope="module")
def guard_dbs():
    """The pipeline's database and another one on the same server: the script SELECTs it."""
    with redis_dbs(2) as dbs:
        yield dbs


@pytest.fixture
def guard_key(guard_dbs):
    key = f"test-fanout-guard:{uuid.uuid4()}"
    yield key
    for db in guard_dbs:
        redis.Redis(db=db).delete(key)


@pytest.mark.parametrize("other_db", [False, True], ids=["same-db", "other-db"])
def test_guard_new_duplicate_and_retry_in_one_round_trip(queues, guard_key, monkeypatch, guard_dbs, other_db):
    guard_db = guard_dbs[1] if other_db else REDIS_DB
    r, names = queues
    src, dst = make_pipelines(names)
    store = redis.Redis(host="127.0.0.1", db=guard_db)
    sender = fanout.BatchSender(FakeBot(src, dst))
    r.script_load(fanout.GUARDED_SCRIPT)     # else the first call is EVALSHA, SCRIPT LOAD, EVALSHA
    commands = []
    original = dst.pipe.execute_command
    monkeypatch.setattr(dst.pipe, "execute_command", lambda *a, **k: commands.append(a[0]) or original(*a, **k))
    monkeypatch.setattr(store, "pipeline", lambda *a, **k: pytest.fail("separate claim transaction"))

    receive_next(r, src, names, b"first")
    assert sender.send_and_acknowledge([("a", "1")], guard=fanout.Guard(guard_key, "tok-1", 60, store)) is True
    assert store.get(guard_key) == b"tok-1" and 0 < store.ttl(guard_key) <= 60
    receive_next(r, src, names, b"same event from another peer")
    assert sender.send_and_acknowledge([("a", "2")], guard=fanout.Guard(guard_key, "tok-2", 60, store)) is False
    receive_next(r, src, names, b"first, retried")
    assert sender.send_and_acknowledge([("a", "3")], guard=fanout.Guard(guard_key, "tok-1", 60, store)) is True
    assert r.lrange(names["a"], 0, -1) == [b"3", b"1"]
    assert r.llen(names["in"] + "-internal") == 0 and r.llen(names["in"]) == 0
    assert commands == ["EVALSHA"] * 3          # one command per message: claim, send, acknowledge
    assert dict(sender.bot._Bot__message_counter["path"]) == {"a": 2}     # the duplicate is not counted
    if guard_db != REDIS_DB:    # the key is in the guard's database only, and the pipeline kept its own
        assert not redis.Redis(db=REDIS_DB).exists(guard_key)
        assert dst.pipe.connection_pool.connection_kwargs["db"] == REDIS_DB
        assert receive_next(r, src, names, b"after") == "after"


def test_guard_on_another_server_claims_in_a_transaction_of_its_own(queues, guard_key, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    store = redis.Redis(host="localhost", db=REDIS_DB)    # the server is told by its address as written: "localhost" is not the pipeline's "127.0.0.1"
    bot = FakeBot(src, dst)
    sender = fanout.BatchSender(bot)
    receive_next(r, src, names, b"first")
    assert sender.send_and_acknowledge([("a", "1")], make_message=str,
                                       guard=fanout.Guard(guard_key, "tok-1", 60, store)) is True
    assert sender.send_and_acknowledge([("a", "2")], make_message=str,
                                       guard=fanout.Guard(guard_key, "tok-2", 60, store)) is False
    assert bot.sent == [("a", "1")] and bot.acked == 2 and sender.fallback == 2
    assert store.get(guard_key) == b"tok-1"


def test_guard_when_scripts_are_disabled(queues, guard_key, monkeypatch):
    r, names = queues
    src, dst = make_pipelines(names)
    store = redis.Redis(host="127.0.0.1", db=REDIS_DB)
    bot = FakeBot(src, dst)
    sender = fanout.BatchSender(bot)

    class Disabled:
        def __call__(self, **kw):
            raise redis.exceptions.ResponseError("ERR This Redis command is not allowed from script")
    monkeypatch.setattr(dst.pipe, "register_script", lambda text: Disabled())
    receive_next(r, src, names, b"first")
    assert sender.send_and_acknowledge([("a", "1")], guard=fanout.Guard(guard_key, "tok-1", 60, store)) is True
    receive_next(r, src, names, b"duplicate")
    assert sender.send_and_acknowledge([("a", "2")], guard=fanout.Guard(guard_key, "tok-2", 60, store)) is False
    assert r.lrange(names["a"], 0, -1) == [b"1"] and bot.acked == 1       # the duplicate via acknowledge_message
    assert store.get(guard_key) == b"tok-1"


def test_guard_claims_nothing_when_there_is_nothing_to_acknowledge(queues, guard_key):
    r, names = queues
    src, dst = make_pipelines(names)
    store = redis.Redis(host="127.0.0.1", db=REDIS_DB)
    with pytest.raises(Exception, match="could not pop the message from the internal queue"):
        fanout.BatchSender(FakeBot(src, dst)).send_and_acknowledge(
            [("a", "1")], guard=fanout.Guard(guard_key, "tok", 60, store))
    assert not store.exists(guard_key) and r.llen(names["a"]) == 0


def test_counts_like_send_message_and_logs_processed_messages(queues, caplog):
    r, names = queues
    src, dst = make_pipelines(names)
    bot = FakeBot(src, dst)
    bot._Bot__message_counter.update({"since": 0, "start": None})
    bot.log_processed_messages_count = 3
    bot.logger = logging.getLogger("test-fanout-bot")
    sender = fanout.BatchSender(bot)
    caplog.set_level(logging.INFO, logger="test-fanout-bot")
    for i in range(4):
        receive_next(r, src, names, f"m{i}".encode())
        sender.send_and_acknowledge([("a", str(i))])
    assert bot._Bot__message_counter["path"]["a"] == 4 and bot._Bot__message_counter["since"] == 1
    assert [rec.getMessage() for rec in caplog.records] == ["Processed 3 messages since last logging."]


# --- EventReader: receive_message() with a memo of the values IntelMQ accepted as they are ----------
import json  # noqa: E402

from hypothesis import given, settings, HealthCheck  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from intelmq.lib.exceptions import InvalidValue  # noqa: E402
from intelmq.lib.message import Event, MessageFactory  # noqa: E402

from intelmq_crossborder.harmonization import merged_harmonization  # noqa: E402

HARM = merged_harmonization()


class ReadingBot(FakeBot):
    """FakeBot with what EventReader reads: harmonization, logger and IntelMQ's receive_message."""

    def __init__(self, src, dst, level=logging.INFO):
        super().__init__(src, dst)
        self._Bot__current_message = None
        self.harmonization = HARM
        self.logger = logging.getLogger("test-fanout-reader")
        self.logger.setLevel(level)
        self.stock = 0

    def receive_message(self):           # what Bot.receive_message does on a Redis pipeline
        self.stock += 1
        raw = self._Bot__source_pipeline.receive()
        self._Bot__current_message = MessageFactory.unserialize(raw, harmonization=self.harmonization)
        return self._Bot__current_message


def stock_event(raw):
    """What IntelMQ makes of ``raw``: the Event, or the exception it raises."""
    try:
        return MessageFactory.unserialize(raw, harmonization=HARM)
    except Exception as exc:      # noqa: BLE001 - the outcome is compared, whatever it is
        return type(exc)


VALUES = {
    "source.ip": st.sampled_from(["192.0.2.1", "2001:db8::1", "192.0.2.256", "192.0.2.1 ", "::ffff:192.0.2.1",
                                  "", "-", "N/A", "1.2.3.4/24", "10.0.0.1"]),
    "source.port": st.one_of(st.integers(-5, 70000), st.sampled_from(["80", 80.0, True, None])),
    "source.fqdn": st.sampled_from(["example.org", "Example.ORG", "example.org.", "xn--bcher-kva.example",
                                    "bücher.example", "-bad-.example", ""]),
    "sharing.tlp": st.sampled_from(["GREEN", "green", "AMBER+STRICT", "TLP:RED", "CLEAR ", "RED", 1]),
    "time.observation": st.sampled_from(["2026-11-20T01:02:03+00:00", "2026-11-20 01:02:03",
                                         "2026-11-20T01:02:03Z", "yesterday", 1700000000]),
    "classification.type": st.sampled_from(["infected-system", "phishing", "Phishing", "nonsense"]),
    "provenance.hub_path": st.sampled_from(["hub-a", "hub-a,hub-b", "HUB-A", "hub-a,,hub-b", ""]),
    "provenance.event_uuid": st.sampled_from(["801e5ea9-d982-41c0-94c8-03190f64d3a7",
                                              "801E5EA9-D982-41C0-94C8-03190F64D3A7", "not-a-uuid"]),
    "extra.n": st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.floats(allow_nan=False),
                         st.just({"nested": [1]}), st.just([])),
    "extra": st.sampled_from(['{"a": 1}', {"a": 1}, "not json"]),
    "feed.name": st.text(max_size=8),
    "no.such_field": st.just("x"),
    "__type": st.sampled_from(["Event", "Report", "event", 7]),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(VALUES)), max_size=8, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: VALUES[k] for k in keys})), st.booleans())
def test_reader_builds_exactly_the_event_intelmq_builds_or_leaves_it_to_intelmq(fields, with_type):
    if with_type:
        fields.setdefault("__type", "Event")
    raw = json.dumps(fields)
    reader = fanout.EventReader(ReadingBot(None, None))
    for _ in range(2):                      # the second time from the memo
        built = reader._build(raw.encode())
        stock = stock_event(raw)
        if built is not None:
            assert type(built) is Event and isinstance(stock, Event)
            assert list(built.items()) == list(stock.items())          # the same fields, values, order
            assert built.serialize() == stock.serialize()
            assert built.harmonization_config is stock.harmonization_config or \
                built.harmonization_config == stock.harmonization_config


def test_reader_leaves_sanitised_ignored_and_invalid_values_to_intelmq():
    reader = fanout.EventReader(ReadingBot(None, None))
    for fields in ({"source.ip": "192.0.2.1 "}, {"source.fqdn": "Example.ORG"}, {"feed.name": ""},
                   {"source.ip": "192.0.2.256"}, {"extra": '{"a": 1}'}, {"extra.a": {"b": 1}}, {"no.such": 1}):
        assert reader._build(json.dumps(dict(fields, __type="Event")).encode()) is None, fields
    for raw in (b'{"__type": "Report", "feed.name": "x"}', b'{"feed.name": "x"}', b"[1]", b"\xff",
                b'{"__type": "Event", "feed.name": "x"', b"[" * 100000):
        assert reader._build(raw) is None, raw[:40]
    built = reader._build(b'{"__type": "Event", "feed.name": "x", "extra.n": 1, "source.port": 80}')
    assert dict(built) == {"feed.name": "x", "extra.n": 1, "source.port": 80}
    # True == 1 and 1.0 == 1 in Python, not for the memo: each type is validated on its own
    assert reader._valid("source.port", 80) and not reader._valid("source.port", True)


def test_reader_memo_is_bounded():
    reader = fanout.EventReader(ReadingBot(None, None), limit=10)
    for i in range(25):
        assert reader._valid("source.port", i + 1)
        assert len(reader.memo) <= 10
    reader.memo.clear()
    raw = "QUJD" * 1000                        # a long value (raw, a description): checked, not kept
    assert reader._valid("raw", raw) and not reader._valid("provenance.hub_path", "HUB-A," * 100 + "hub-b")
    assert reader.memo == {}


def test_reader_receives_from_the_internal_queue_and_acknowledges_as_intelmq(queues):
    r, names = queues
    src, dst = make_pipelines(names)
    bot = ReadingBot(src, dst)
    reader = fanout.EventReader(bot)
    sender = fanout.BatchSender(bot)
    raws = [json.dumps({"__type": "Event", "feed.name": "f", "source.ip": f"192.0.2.{i}"}) for i in range(3)]
    r.lpush(names["in"], *raws)
    first = reader.receive()                 # the internal queue is empty: IntelMQ's own (blocking) receive
    assert (reader.fast, reader.slow, bot.stock) == (0, 1, 1) and first["source.ip"] == "192.0.2.0"
    assert reader.receive() is first         # the current message again, as receive_message() does
    sender.send_and_acknowledge([("a", fanout.serialize_event(dict(first)))])   # moves the next one in
    second = reader.receive()
    assert (reader.fast, reader.slow) == (1, 1) and second == stock_event(raws[1])
    assert bot._Bot__current_message is second and src._has_message is True
    assert r.llen(names["in"] + "-internal") == 1
    sender.send_and_acknowledge([("a", fanout.serialize_event(dict(second)))])
    third = reader.receive()
    assert third["source.ip"] == "192.0.2.2" and reader.fast == 2
    bot.logger.setLevel(logging.DEBUG)       # IntelMQ logs every received message at DEBUG: its own path
    sender.send_and_acknowledge([])
    r.lpush(names["in"], raws[0])
    bot._Bot__current_message = None
    assert reader.receive() == stock_event(raws[0]) and reader.slow == 2
    assert [json.loads(x)["source.ip"] for x in reversed(r.lrange(names["a"], 0, -1))] == \
        ["192.0.2.0", "192.0.2.1"]


def test_reader_leaves_a_message_intelmq_refuses_to_intelmq(queues):
    r, names = queues
    src, dst = make_pipelines(names)
    bot = ReadingBot(src, dst)
    reader = fanout.EventReader(bot)
    r.lpush(names["in"] + "-internal", b'{"__type": "Event", "source.ip": "192.0.2.300"}')
    with pytest.raises(InvalidValue, match="source.ip"):
        reader.receive()
    assert bot.stock == 1 and reader.fast == 0


def test_reader_falls_back_without_a_redis_pipeline():
    class Bot:
        harmonization = HARM
        logger = logging.getLogger("x")
        _Bot__source_pipeline = object()
        _Bot__current_message = None

        def receive_message(self):
            return "stock"
    assert fanout.EventReader(Bot()).receive() == "stock"


def test_harmonize_stores_what_event_add_would():
    reader = fanout.EventReader(ReadingBot(None, None))
    received = reader._build(b'{"__type": "Event", "feed.name": "x", "source.fqdn": "example.org"}')
    for key, value in [("provenance.hub_path", "hub-a,hub-b"), ("source.fqdn", "Example.ORG."),
                       ("provenance.origin_country", "de"), ("feed.name", ""), ("sharing.tlp", "amber"),
                       ("extra", '{"k": 1}'), ("tlp", "GREEN")]:
        fields = dict(received)
        fields[key] = value
        stock = Event(dict(received), harmonization=HARM)
        stock.add(key, value, overwrite=True)
        reader.harmonize(fields, received)
        assert list(fields.items()) == list(stock.items()), key
    fields = dict(received, **{"provenance.hub_path": "HUB A"})
    with pytest.raises(InvalidValue, match="provenance.hub_path") as info:
        reader.harmonize(fields, received)
    assert info.value.object is None         # IntelMQ dumps the received message, not a probe


@pytest.mark.parametrize("guarded", [False, True])
def test_the_send_reads_the_next_message_for_the_next_receive(queues, guard_key, guarded):
    """The round trip of a pipelined or guarded send also reads what the next receive's LINDEX
    would: the reader with that sender then receives without asking Redis (one round trip per
    event).  Taken once; None when nothing was waiting; nothing left after a failed send."""
    r, names = queues
    src, dst = make_pipelines(names)
    bot = ReadingBot(src, dst)
    sender = fanout.BatchSender(bot)
    reader = fanout.EventReader(bot, sender=sender)
    store = redis.Redis(host="127.0.0.1", db=REDIS_DB)
    raws = [json.dumps({"__type": "Event", "feed.name": "f", "source.ip": f"192.0.2.{i}"}) for i in range(3)]
    r.lpush(names["in"], *raws[:2])
    first = reader.receive()                                 # IntelMQ's receive: nothing prefetched yet

    def send(event, n):
        guard = fanout.Guard(f"{guard_key}:{n}", f"tok-{n}", 60, store) if guarded else None
        return sender.send_and_acknowledge([("a", fanout.serialize_event(dict(event)))], guard=guard)
    assert send(first, 1) is True
    assert r.lrange(names["in"] + "-internal", -1, -1) == [raws[1].encode()]
    original = src.pipe.execute_command
    src.pipe.execute_command = lambda *a, **k: pytest.fail(f"asked Redis: {a[0]}")
    try:
        second = reader.receive()                            # from the send's round trip
    finally:
        src.pipe.execute_command = original
    assert second == stock_event(raws[1]) and reader.fast == 1 and sender.take_next() is None
    assert send(second, 2) is True                           # nothing was waiting: nothing read
    assert sender.take_next() is None and r.llen(names["in"] + "-internal") == 0
    r.lpush(names["in"], raws[2])
    third = reader.receive()                                 # IntelMQ's own (blocking) receive again
    assert third == stock_event(raws[2]) and bot.stock == 2
    sender._next = b"stale"
    with pytest.raises(Exception, match="no destination queues"):
        sender.send_and_acknowledge([("nowhere", "x")])
    assert sender.take_next() is None                        # a failed send leaves nothing to take
