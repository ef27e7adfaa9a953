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
move.  A bot then needs two round trips per event (IntelMQ's stock bots need four).

IntelMQ keeps the pipelines, the current message and the statistics counters in
name-mangled attributes of ``intelmq.lib.bot.Bot`` (``self.__destination_pipeline``
is ``self._Bot__destination_pipeline``); there is no public accessor.  This module
is the ONE place that reads them, by their mangled names, and it checks that
they exist and have the expected types (it also resets the Redis pipeline's
``_has_message`` flag, as ``Pipeline.acknowledge()`` does).  When they do not (another broker such
as AMQP, the in-memory pipeline of ``BotTestCase``, source and destination on
different Redis servers, or a future IntelMQ that renamed them) it falls back to
the public ``send_message``/``acknowledge_message``: correct, only slower.
"""
from __future__ import annotations

import json as _json
from typing import Iterable, Optional

from intelmq.lib import pipeline as _pipeline
from intelmq.lib import utils as _utils
from intelmq.lib.exceptions import PipelineError
from redis import exceptions as _redis_errors

__all__ = ["BatchSender", "serialize_event"]

_SOURCE = "_Bot__source_pipeline"
_DESTINATION = "_Bot__destination_pipeline"
_CURRENT = "_Bot__current_message"
_COUNTER = "_Bot__message_counter"


def serialize_event(event: dict) -> str:
    """Serialise a flat, already valid event dict exactly as IntelMQ does (``Message.serialize``:
    the fields, then ``"__type": "Event"``)."""
    if not event:
        return '{"__type": "Event"}'
    return _json.dumps(event)[:-1] + ', "__type": "Event"}'



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


MODES = ("script", "pipeline", "transaction")


class BatchSender:
    """Send ``(path, raw_message)`` pairs and acknowledge the input of ``bot`` at once.

    ``mode`` says how, always in one round trip:

    - ``pipeline`` (the router's default): the ``LPUSH``es, the acknowledging ``RPOP``
      and the ``RPOPLPUSH`` of the next message sent together in one write, without
      ``MULTI``: no Lua on the server, a reply per command, and exactly the
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
            # send, then acknowledge (IntelMQ's order), then move the next message in
            pipe = client.pipeline(transaction=False)
            for key, data in zip(keys, args):
                pipe.lpush(key, data)
            pipe.rpop(keys[-2])
            pipe.rpoplpush(keys[-1], keys[-2])
            results = pipe.execute()
            return 1 if results[-2] is not None else 0
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

    def send_and_acknowledge(self, items: Iterable[tuple], make_message=None) -> None:
        """Send every ``(path, raw)`` and acknowledge the current input message.

        ``raw`` is the serialised message (:func:`serialize_event`).  On the
        fallback path ``make_message(raw)`` turns it into an IntelMQ message for
        ``send_message`` (it defaults to validating it with the bot's harmonization).
        An unknown path raises :class:`intelmq.lib.exceptions.PipelineError`
        before anything is sent.
        """
        items = list(items)
        pipes = self._redis_pipelines()
        if pipes is None:
            self._fallback(items, make_message)
            return
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
            acknowledged = self._execute(dst.pipe, keys, args)
        except PipelineError:
            raise
        except Exception as exc:
            raise PipelineError(exc) from exc
        if not acknowledged:
            raise PipelineError("could not pop the message from the internal queue for acknowledgement")
        # what acknowledge_message() and send_message() would have recorded
        src._has_message = False
        setattr(self.bot, _CURRENT, None)
        counter = getattr(self.bot, _COUNTER, None)
        if isinstance(counter, dict) and "path" in counter:
            for path, _ in items:
                counter["path"][path] += 1
        self.batched += 1

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
