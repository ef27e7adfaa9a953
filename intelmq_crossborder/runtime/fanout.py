"""Batched fan-out: send to several named paths and acknowledge in ONE Redis round trip.

IntelMQ's ``Bot.send_message`` does one ``LPUSH`` per message and destination
queue, and ``acknowledge_message`` one ``RPOP`` of the internal queue: a router
that sends an event to N recipients pays N + 1 round trips (0.2–0.5 ms each on
these machines).  :class:`BatchSender` sends the ``LPUSH``es of all copies, the
acknowledging ``RPOP`` and the move of the next waiting message to the bot's
internal queue (what IntelMQ's next receive would do with ``BLMOVE``) in one
round trip: as a pipelined batch (default), one Lua script call (atomic) or one
``MULTI``/``EXEC`` transaction (see :class:`BatchSender`).  The next receive finds
the moved message with its first command (``LINDEX``) and skips the blocking
move.  A bot then needs two round trips per event (IntelMQ's stock bots need four); the
pipelined and guarded sends also read that ``LINDEX`` in their own round trip, and a bot
that receives with :class:`EventReader` needs one.

IntelMQ keeps the pipelines, the current message and the statistics counters in
name-mangled attributes of ``intelmq.lib.bot.Bot`` (``self.__destination_pipeline``
is ``self._Bot__destination_pipeline``); there is no public accessor.  This module
is the ONE place that reads them, by their mangled names, and it checks that
they exist and have the expected types (it also resets the Redis pipeline's
``_has_message`` flag, as ``Pipeline.acknowledge()`` does).  When they do not (another broker such
as AMQP, the in-memory pipeline of ``BotTestCase``, source and destination on
different Redis servers, or a future IntelMQ that renamed them) it falls back to
the public ``send_message``/``acknowledge_message``: correct, only slower.
tests/test_runtime_contract.py pins every IntelMQ internal used here to the
supported IntelMQ versions (setup.cfg) and names the one that changed.

The receiving side: :class:`EventReader` receives as ``Bot.receive_message`` does, but builds
the event from a memo of the (field, value) pairs that IntelMQ's own ``Event.add`` accepted
as they are, instead of validating every field of every message again (about 50 µs of the
CPU of a bot per event); :meth:`EventReader.harmonize` checks what a bot added the same way.
Anything the memo does not know as valid goes through IntelMQ's own path, errors included.
"""
from __future__ import annotations

import copy as _copy
import inspect as _inspect
import json as _json
import logging as _logging
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Optional

from intelmq.lib import message as _message
from intelmq.lib import pipeline as _pipeline
from intelmq.lib import utils as _utils
from intelmq.lib.exceptions import IntelMQException, InvalidValue, PipelineError
import redis as _redis
from redis import exceptions as _redis_errors
from redis.utils import safe_str as _safe_str

__all__ = ["BatchSender", "EventReader", "Guard", "serialize_event"]

_SOURCE = "_Bot__source_pipeline"
_DESTINATION = "_Bot__destination_pipeline"
_CURRENT = "_Bot__current_message"
_COUNTER = "_Bot__message_counter"
_LOG_PERIOD = "_Bot__log_processed_messages_seconds"


def serialize_event(event: dict) -> str:
    """Serialise a flat, already valid event dict exactly as IntelMQ does (``Message.serialize``:
    the fields, then ``"__type": "Event"``)."""
    if not event:
        return '{"__type": "Event"}'
    return _json.dumps(event)[:-1] + ', "__type": "Event"}'



#: What ``Pipeline.execute`` passes to ``ConnectionPool.get_connection``: redis-py 4 needs a
#: command name, redis-py 5.3 warns about one.
_GET_CONNECTION_ARGS: tuple = () if _inspect.signature(_redis.ConnectionPool.get_connection).parameters[
    "command_name"].default is not _inspect.Parameter.empty else ("MULTI", None)


def _disconnect_raise(conn, error: Exception) -> None:
    """What ``Pipeline.execute`` does when a round trip fails (``_disconnect_raise_reset``): drop
    the connection, and raise unless the client was configured to retry this error (IntelMQ's
    clients are not, and redis-py < 6 retries nothing by default: a lost reply is never retried)."""
    conn.disconnect()
    retry_on = getattr(conn, "retry_on_error", None)
    if retry_on is None:                  # redis-py 4.0/4.1: only timeouts, only when asked
        if getattr(conn, "retry_on_timeout", False) and isinstance(error, _redis_errors.TimeoutError):
            return
        raise error
    if not isinstance(error, tuple(retry_on)):
        raise error


def _round_trip(conn, commands: list) -> list:
    """Write ``commands`` packed into one write and read a reply per command (redis-py's
    ``Pipeline._execute_pipeline`` without its per-command objects and response callbacks).
    Every reply is read before an error reply is raised, so the connection stays in step."""
    conn.send_packed_command(conn.pack_commands(commands))
    replies, error = [], None
    read = conn.read_response
    for i, command in enumerate(commands):
        try:
            replies.append(read())
        except _redis_errors.ResponseError as exc:
            if error is None:
                exc.args = (f"Command # {i + 1} ({' '.join(map(_safe_str, command))}) of pipeline "
                            f"caused error: {exc.args[0]}",) + exc.args[1:]
                error = exc
            replies.append(exc)
    if error is not None:
        raise error
    return replies


#: KEYS = destination queue of each message, then the internal queue, then the source queue;
#: ARGV = the messages.  LPUSH every message to its queue, RPOP the internal queue (the
#: acknowledgement) and, when that worked, move the next waiting message from the source queue
#: to the internal queue (what IntelMQ's next receive would do with BLMOVE: the next receive then
#: finds it there with the LINDEX it always does first, and needs no second command).
#: One command, one reply, atomic (Redis runs a script without interleaving other commands).
#: Returns 1, or 0 when there was nothing to acknowledge (then nothing is sent or moved).
FANOUT_SCRIPT = """
local n = #ARGV
if not redis.call('RPOP', KEYS[n + 1]) then
  return 0
end
for i = 1, n do
  redis.call('LPUSH', KEYS[i], ARGV[i])
end
redis.call('RPOPLPUSH', KEYS[n + 2], KEYS[n + 1])
return 1
"""


#: The guarded variant: the same, but the copies are sent only when a de-duplication key is
#: new or already holds this message's token (a retry of the very same message).
#: KEYS = destination queues, internal queue, source queue, the guard key;
#: ARGV = the messages, token, TTL in seconds, the guard key's database, the pipeline's database.
#: The guard key may live in another database of the same server: the script SELECTs it (since
#: Redis 2.8.12 a script's SELECT does not change the caller's database).
#: Returns ``{1 (sent) or 2 (duplicate: acknowledged, nothing sent), the next message}`` (what the
#: next receive's ``LINDEX`` would read, or false), or 0 (nothing to acknowledge: nothing
#: claimed, sent or moved).
GUARDED_SCRIPT = """
local n = #ARGV - 4
local token, ttl, guard_db, pipe_db = ARGV[n + 1], ARGV[n + 2], ARGV[n + 3], ARGV[n + 4]
local internal, source, key = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
if not redis.call('LINDEX', internal, -1) then
  return 0
end
if guard_db ~= pipe_db then redis.call('SELECT', guard_db) end
local result = 1
if not redis.call('SET', key, token, 'NX', 'EX', ttl) then
  if redis.call('GET', key) ~= token then result = 2 end
end
if guard_db ~= pipe_db then redis.call('SELECT', pipe_db) end
redis.call('RPOP', internal)
if result == 1 then
  for i = 1, n do
    redis.call('LPUSH', KEYS[i], ARGV[i])
  end
end
redis.call('RPOPLPUSH', source, internal)
return {result, redis.call('LINDEX', internal, -1)}
"""


MODES = ("script", "pipeline", "transaction")


def _server(host, port, db) -> tuple:
    host = str(host)
    if host.startswith("unix://"):
        host = host[len("unix://"):]
    return (host, None if host.startswith("/") else str(port), int(db))


class Guard:
    """Send only if ``key`` is new, or already holds ``token``; the key then lives ``ttl`` seconds.

    The de-duplication claim of the provenance expert: the first message with a given
    fingerprint claims the key with its token; a retry of that very message (same
    token, e.g. after a restart before the acknowledgement) passes again; any other
    message with the fingerprint is a duplicate.  ``client`` is the Redis the key
    lives in.  :meth:`BatchSender.send_and_acknowledge` makes the claim inside the
    send/acknowledge round trip (:data:`GUARDED_SCRIPT`) when ``client`` is on the
    pipeline's Redis server, and with :meth:`claim` (one ``MULTI``/``EXEC``) otherwise.
    """

    __slots__ = ("key", "token", "ttl", "client")

    def __init__(self, key: str, token: str, ttl: int, client):
        self.key, self.token, self.ttl, self.client = key, token, int(ttl), client

    def server(self) -> tuple:
        kw = self.client.connection_pool.connection_kwargs
        return _server(kw.get("path") or kw.get("host", "127.0.0.1"), kw.get("port", 6379), kw.get("db", 0))

    def claim(self) -> bool:
        """Claim the key in a transaction of its own: True when the message may be sent."""
        tx = self.client.pipeline(transaction=True)
        tx.set(self.key, self.token, nx=True, ex=self.ttl)
        tx.get(self.key)
        created, stored = tx.execute()
        return bool(created) or (stored is not None and stored.decode("utf-8", "replace") == self.token)


class BatchSender:
    """Send ``(path, raw_message)`` pairs and acknowledge the input of ``bot`` at once.

    ``mode`` says how, always in one round trip:

    - ``pipeline`` (the router's default): the ``LPUSH``es, the acknowledging ``RPOP``
      and the ``RPOPLPUSH`` of the next message sent together in one write, without
      ``MULTI`` (what a redis-py ``Pipeline`` sends, on a connection of the client's
      pool with redis-py's ``pack_commands``/``read_response``, without the
      ``Pipeline`` object's per-command cost): no Lua on the server, a reply per command, and exactly the
      guarantee of IntelMQ's own send-then-acknowledge (an interruption in the
      middle can repeat copies, never lose the message).  Measured the cheapest in
      bot and Redis CPU on the 2-core benchmark machine.
    - ``script``: one ``EVALSHA`` of :data:`FANOUT_SCRIPT`: one command and one
      reply, atomic (all copies and the acknowledgement, or nothing), and it also
      moves the next message; it costs Redis about 25 µs of Lua per call.  Where
      scripts are not allowed (some managed Redis services disable them) it switches
      to ``transaction`` by itself.
    - ``transaction``: ``LPUSH``es and ``RPOP`` in ``MULTI``/``EXEC``: atomic, no Lua,
      two replies per command, no move of the next message.
    """

    def __init__(self, bot, mode: str = "pipeline"):
        if mode not in MODES:
            raise ValueError(f"fan-out mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.bot = bot
        self.mode = mode
        self.batched = 0       # messages processed through the one-round-trip path
        self.fallback = 0      # messages processed through send_message/acknowledge_message
        self._script = None
        self._script_client = None
        self._guarded = None
        self._guarded_client = None
        self._guarded_disabled = False
        self._next = None      # the next input message, read in the last round trip (pipeline, guarded)

    @property
    def use_script(self) -> bool:
        return self.mode == "script"

    @use_script.setter
    def use_script(self, value: bool) -> None:
        self.mode = "script" if value else "transaction"

    def _execute(self, client, keys: list, args: list):
        if self.mode == "script":
            if self._script_client is not client:
                self._script = client.register_script(FANOUT_SCRIPT)
                self._script_client = client
            try:
                return self._script(keys=keys, args=args)
            except _redis_errors.ResponseError as exc:
                text = str(exc).lower()
                if "unknown command" not in text and "noscript" not in text and "not allowed" not in text:
                    raise
                self.mode = "transaction"      # scripts disabled on this server
        if self.mode == "pipeline":
            # send, then acknowledge (IntelMQ's order), then move the next message in: one write on
            # a connection of the client's pool, as Pipeline.execute() does, with the same handling
            # of a failed round trip (_disconnect_raise) and the connection released afterwards
            commands = [("LPUSH", key, data) for key, data in zip(keys, args)]
            commands.append(("RPOP", keys[-2]))
            commands.append(("RPOPLPUSH", keys[-1], keys[-2]))
            commands.append(("LINDEX", keys[-2], -1))     # what the next receive reads first
            pool = client.connection_pool
            conn = pool.get_connection(*_GET_CONNECTION_ARGS)
            try:
                replies = conn.retry.call_with_retry(lambda: _round_trip(conn, commands),
                                                     lambda error: _disconnect_raise(conn, error))
            finally:
                pool.release(conn)
            if replies[-3] is None:
                return 0
            self._next = replies[-1]
            return 1
        tx = client.pipeline(transaction=True)
        for key, data in zip(keys, args):
            tx.lpush(key, data)
        tx.rpop(keys[-2])
        return 1 if tx.execute()[-1] is not None else 0      # no move of the next message here

    def _redis_pipelines(self) -> Optional[tuple]:
        bot = self.bot
        src = getattr(bot, _SOURCE, None)
        dst = getattr(bot, _DESTINATION, None)
        if type(src) is not _pipeline.Redis or type(dst) is not _pipeline.Redis:
            return None
        if getattr(bot, "load_balance", False):
            return None
        if src.pipe is None or dst.pipe is None:
            return None
        if (src.host, str(src.port), src.db) != (dst.host, str(dst.port), dst.db):
            return None
        if not hasattr(src, "internal_queue") or not hasattr(bot, _CURRENT):
            return None
        return src, dst

    def available(self) -> bool:
        """Whether the one-round-trip path is usable for the bot's current pipelines."""
        return self._redis_pipelines() is not None

    def send_and_acknowledge(self, items: Iterable[tuple], make_message=None,
                             guard: Optional[Guard] = None) -> bool:
        """Send every ``(path, raw)`` and acknowledge the current input message.

        ``raw`` is the serialised message (:func:`serialize_event`).  On the
        fallback path ``make_message(raw)`` turns it into an IntelMQ message for
        ``send_message`` (it defaults to validating it with the bot's harmonization).
        An unknown path raises :class:`intelmq.lib.exceptions.PipelineError`
        before anything is sent.  With a :class:`Guard`, nothing is sent when the
        guard says the message is a duplicate (it is acknowledged all the same).
        Returns whether the items were sent.
        """
        items = list(items)
        self._next = None
        pipes = self._redis_pipelines()
        guard_server = guard.server() if guard is not None else None
        if pipes is not None and guard_server is not None and guard_server[:2] != _server(
                pipes[1].host, pipes[1].port, pipes[1].db)[:2]:
            pipes = None                         # the guard key is on another server
        if pipes is None:
            if guard is not None and not guard.claim():
                self.bot.acknowledge_message()
                self.fallback += 1
                return False
            self._fallback(items, make_message)
            return True
        src, dst = pipes
        queues = dst.destination_queues
        keys, args = [], []
        for path, raw in items:
            try:
                targets = queues[path]
            except KeyError:
                raise PipelineError(f"no destination queues for path {path!r}") from None
            data = _utils.encode(raw)
            for queue in targets:
                keys.append(queue)
                args.append(data)
        keys.append(src.internal_queue)
        keys.append(src.source_queue)
        try:
            if guard is None:
                acknowledged = self._execute(dst.pipe, keys, args)
            else:
                acknowledged = self._execute_guarded(dst.pipe, keys, args, guard, guard_server[2], dst.db)
                if acknowledged is None:             # scripts are disabled on this server
                    if not guard.claim():
                        self.bot.acknowledge_message()
                        self.fallback += 1
                        return False
                    acknowledged = self._execute(dst.pipe, keys, args)
        except PipelineError:
            raise
        except Exception as exc:
            raise PipelineError(exc) from exc
        if not acknowledged:
            raise PipelineError("could not pop the message from the internal queue for acknowledgement")
        sent = acknowledged == 1
        # what acknowledge_message() and send_message() would have recorded
        src._has_message = False
        setattr(self.bot, _CURRENT, None)
        if sent:
            self._count(items)
        self.batched += 1
        return sent

    def send_one_and_acknowledge(self, message, path: str = "_default", guard: Optional[Guard] = None) -> bool:
        """Send one IntelMQ message on ``path`` and acknowledge the input (see
        :meth:`send_and_acknowledge`): two Redis round trips per event instead of four."""
        return self.send_and_acknowledge([(path, message.serialize())], make_message=lambda raw: message,
                                         guard=guard)

    def _count(self, items: list) -> None:
        """What ``Bot.send_message`` records: messages per path, and the periodic
        "Processed N messages since last logging." line."""
        bot = self.bot
        counter = getattr(bot, _COUNTER, None)
        if not isinstance(counter, dict) or "path" not in counter:
            return
        for path, _ in items:
            counter["path"][path] += 1
        if "since" not in counter or not items:
            return
        counter["since"] += len(items)
        now = datetime.now()
        if not counter.get("start"):
            counter["start"] = now
        every = getattr(bot, "log_processed_messages_count", 500) or 500
        period = getattr(bot, _LOG_PERIOD, None) or timedelta(seconds=900)
        if counter["since"] >= every or now - counter["start"] > period:
            bot.logger.info("%s %d messages since last logging.",
                            getattr(bot, "_message_processed_verb", "Processed"), counter["since"])
            counter["since"] = 0
            counter["start"] = now

    def _execute_guarded(self, client, keys: list, args: list, guard: Guard, guard_db: int,
                         pipe_db) -> Optional[int]:
        """Run :data:`GUARDED_SCRIPT`; None when the server does not allow scripts."""
        if self._guarded_disabled:
            return None
        if self._guarded_client is not client:
            self._guarded = client.register_script(GUARDED_SCRIPT)
            self._guarded_client = client
        try:
            reply = self._guarded(keys=keys + [guard.key],
                                  args=args + [guard.token, guard.ttl, guard_db, int(pipe_db)])
        except _redis_errors.ResponseError as exc:
            text = str(exc).lower()
            if "unknown command" not in text and "noscript" not in text and "not allowed" not in text:
                raise
            self._guarded_disabled = True
            return None
        if not isinstance(reply, list):
            return int(reply)
        self._next = reply[1]
        return int(reply[0])

    def take_next(self) -> Optional[bytes]:
        """The next input message, as the bot's next receive would find it in the internal queue,
        read in the round trip of the last send (pipeline mode and guarded sends); None when
        there was none or it was taken.  :class:`EventReader` takes it instead of asking Redis."""
        raw, self._next = self._next, None
        return raw

    def _fallback(self, items: list, make_message) -> None:
        bot = self.bot
        if make_message is None:
            from intelmq.lib.message import MessageFactory

            def make_message(raw):
                return MessageFactory.unserialize(raw, harmonization=bot.harmonization)
        for path, raw in items:
            bot.send_message(make_message(raw), path=path)
        bot.acknowledge_message()
        self.fallback += 1


#: The JSON scalar types whose (field, value) pairs the memo of :class:`EventReader` holds.
_SCALARS = frozenset((str, int, float, bool))
#: Longer strings (``raw``, descriptions) are validated every time, never kept: the memo stays
#: small (at most ``limit`` entries of at most this many characters).
_MEMO_MAX_CHARS = 256


class EventReader:
    """Receive the bot's input events as ``Bot.receive_message`` does, validated with a memo.

    IntelMQ builds every received message with ``Event(...)``: a check of every key of the
    harmonization, then ``add`` (sanitise, validate) for every field, about 50 µs for an
    event of 15 fields, although most values (feed, classification, TLP, hub path, origin)
    repeat from one event to the next.  The reader keeps a memo of the (field, type, value)
    triples that IntelMQ's own ``Event.add(..., sanitize=False)`` stored unchanged, one
    field at a time (that is a function of the field, the value and the harmonization only).
    When every field of a message is in the memo, or passes that same test now, the
    message is built as the ``Event`` IntelMQ would have built, without validating again:
    the same fields, values and order.  Everything else is left to IntelMQ's own
    ``receive_message``: a value IntelMQ would sanitise or refuse, an empty value it would
    leave out, a nested or ``extra`` JSON value, a message that is not an ``Event``, an
    encoding or JSON error, and every message when the pipeline is not Redis or the bot
    logs at DEBUG.

    The fast path only takes a message already waiting in the internal queue (one
    ``LINDEX``: the send of :class:`BatchSender` moves the next message there), so
    IntelMQ's handling of a blocking receive (reload on SIGHUP, empty messages) stays
    IntelMQ's.  With the bot's ``sender``, that ``LINDEX`` was already made in the round trip
    of the last send (:meth:`BatchSender.take_next`): then a bot needs ONE Redis round trip
    per event.  The memo holds at most ``limit`` triples (then it starts again), and no
    string longer than 256 characters (such a value is validated every time).
    """

    def __init__(self, bot, limit: int = 50_000, sender: Optional[BatchSender] = None):
        self.bot = bot
        self.sender = sender
        self.limit = limit
        self.memo: dict = {}
        self.fast = 0          # messages built from the memo
        self.slow = 0          # messages received through Bot.receive_message
        self._template = None
        self._probe = None

    def _empty(self):
        """An empty Event of the bot's harmonization, made once (``Event()`` checks every
        harmonization key), then copied (an empty dict subclass: no ``add`` runs)."""
        if self._template is None:
            self._template = _message.Event(harmonization=self.bot.harmonization)
        return _copy.copy(self._template)

    def _valid(self, key: str, value: Any) -> bool:
        """Whether IntelMQ stores ``value`` in ``key`` exactly as it is (memoised)."""
        kind = type(value)
        if kind not in _SCALARS:
            return False
        triple = (key, kind, value)
        known = self.memo.get(triple)
        if known is not None:
            return known
        keep = kind is not str or len(value) <= _MEMO_MAX_CHARS    # not raw, long texts: unique anyway
        probe = self._probe
        if probe is None:
            probe = self._probe = self._empty()
        try:
            ok = (probe.add(key, value, sanitize=False, raise_failure=False) is True and len(probe) == 1
                  and dict.get(probe, key) is value)
        except (IntelMQException, ValueError, TypeError, KeyError):
            ok = False
        finally:
            dict.clear(probe)
        if keep:
            if len(self.memo) >= self.limit:
                self.memo.clear()
            self.memo[triple] = ok
        return ok

    def _source(self):
        bot = self.bot
        src = getattr(bot, _SOURCE, None)
        if type(src) is not _pipeline.Redis or src.pipe is None or not hasattr(src, "internal_queue"):
            return None
        if not hasattr(bot, _CURRENT) or src._has_message:
            return None
        return src

    def receive(self):
        """The next input event (an IntelMQ ``Event``), as ``receive_message()`` returns it."""
        bot = self.bot
        current = getattr(bot, _CURRENT, None)
        if current is not None:
            return current
        src = self._source()
        if src is not None and not bot.logger.isEnabledFor(_logging.DEBUG):
            raw = self.sender.take_next() if self.sender is not None else None
            if raw is None:
                try:
                    raw = src.pipe.lindex(src.internal_queue, -1)
                except _redis_errors.BusyLoadingError:    # Redis starting: IntelMQ's receive waits for it
                    raw = None
                except Exception as exc:
                    raise PipelineError(exc) from exc
            event = self._build(raw) if raw else None
            if event is not None:
                src._has_message = True          # what Pipeline.receive() records
                setattr(bot, _CURRENT, event)    # what receive_message() records
                self.fast += 1
                return event
        self.slow += 1
        return bot.receive_message()

    def _build(self, raw: bytes):
        try:
            fields = _json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if type(fields) is not dict or fields.pop("__type", None) != "Event":
            return None
        valid = self._valid
        for key, value in fields.items():
            if not valid(key, value):
                return None
        event = self._empty()
        dict.update(event, fields)
        return event

    def harmonize(self, fields: dict, received: Optional[Mapping[str, Any]] = None) -> None:
        """Make the fields a bot set (those of ``fields`` that are not the very objects of
        ``received``) what ``Event.add(key, value, overwrite=True)`` would store: a value the
        memo knows as valid stays; any other goes through ``add`` itself (sanitised, left out
        when IntelMQ ignores it, or :class:`intelmq.lib.exceptions.InvalidValue` naming the
        field, and the bot dumps the received message as IntelMQ does)."""
        changed = None
        for key, value in fields.items():
            if received is not None and dict.get(received, key, _MISSING) is value:
                continue
            if not self._valid(key, value):
                changed = changed or []
                changed.append(key)
        for key in changed or ():
            probe = self._empty()
            try:
                probe.add(key, fields[key], overwrite=True)
            except InvalidValue as exc:
                exc.object = None      # IntelMQ then dumps the received message, not the probe
                raise
            stored = dict(probe)
            if list(stored) == [key]:
                fields[key] = stored[key]
            else:                     # left out, or a JSON value spread over its subfields
                items = list(fields.items())
                fields.clear()
                for name, value in items:
                    if name == key:
                        fields.update(stored)
                    elif name not in stored:
                        fields[name] = value


_MISSING = object()
