"""Contract: the IntelMQ internals that intelmq_crossborder relies on exist in the installed IntelMQ.

IntelMQ offers no public accessor for a bot's pipelines, current message or message
counter; intelmq_crossborder.runtime.fanout reads them by their name-mangled names
(``_Bot__destination_pipeline`` ...) and reproduces what ``send_message`` and
``acknowledge_message`` record.  These tests pin each internal, read from IntelMQ's own
source (attributes set only in methods are found with the AST), and fail naming the
internal that changed.  When IntelMQ is upgraded past the range in setup.cfg, re-check
runtime/fanout.py against the new Bot and Pipeline, then widen the range.
"""
import ast
import configparser
import inspect
import re
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from intelmq.lib import bot as ibot
from intelmq.lib import exceptions as iexceptions
from intelmq.lib import message as imessage
from intelmq.lib import pipeline as ipipeline
from intelmq.lib import upgrades as iupgrades
from intelmq.lib import utils as iutils
from packaging.specifiers import SpecifierSet

from intelmq_crossborder.runtime import fanout

ROOT = Path(__file__).resolve().parent.parent


def _supported() -> SpecifierSet:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    for line in cfg["options"]["install_requires"].splitlines():
        match = re.fullmatch(r"\s*intelmq\s*([<>=!~].*)", line)
        if match:
            return SpecifierSet(match.group(1).replace(" ", ""))
    raise AssertionError("setup.cfg: no 'intelmq' requirement in install_requires")


def _self_attributes(cls) -> set:
    """Every ``self.<name>`` that ``cls``'s own source reads or assigns, with private names
    mangled as Python does (``self.__x`` in class Bot is ``_Bot__x``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            name = node.attr
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"
            names.add(name)
    return names


def _method_source(cls, name: str) -> str:
    return inspect.getsource(getattr(cls, name))


def test_installed_intelmq_is_in_the_supported_range():
    spec, installed = _supported(), version("intelmq")
    assert installed in spec, (
        f"IntelMQ {installed} is installed, setup.cfg supports intelmq {spec}: the internals pinned in "
        "tests/test_runtime_contract.py were checked only for that range")


#: Name-mangled attributes of intelmq.lib.bot.Bot that runtime/fanout.py reads or writes.
BOT_PRIVATE = {
    "_Bot__source_pipeline": "fanout reads the source pipeline (internal and source queue)",
    "_Bot__destination_pipeline": "fanout reads the destination queues per path",
    "_Bot__current_message": "fanout clears it as acknowledge_message() does",
    "_Bot__message_counter": "fanout counts sent messages as send_message() does",
    "_Bot__log_processed_messages_seconds": "fanout logs 'Processed N messages' as send_message() does",
}


def test_fanout_uses_exactly_the_pinned_private_names():
    used = {value for name, value in vars(fanout).items()
            if isinstance(value, str) and value.startswith("_Bot__")}
    assert used == set(BOT_PRIVATE), (
        "runtime/fanout.py relies on IntelMQ internals that this contract does not pin (or no longer uses "
        f"pinned ones): {sorted(used ^ set(BOT_PRIVATE))}")


@pytest.mark.parametrize("name", sorted(BOT_PRIVATE))
def test_bot_private_attribute_exists(name):
    assert name in _self_attributes(ibot.Bot), (
        f"IntelMQ {version('intelmq')}: intelmq.lib.bot.Bot no longer has {name} "
        f"({BOT_PRIVATE[name]}); update intelmq_crossborder/runtime/fanout.py")


def test_message_counter_keys():
    source = inspect.getsource(ibot.Bot)
    for key in ("path", "since", "start"):
        assert f'self.__message_counter["{key}"]' in source, (
            f"IntelMQ: Bot.__message_counter no longer has the key {key!r} that runtime/fanout.py updates")
    assert re.search(r'"path":\s*defaultdict\(int\)', source), \
        "IntelMQ: Bot.__message_counter['path'] is no longer a defaultdict(int) of messages per path"


@pytest.mark.parametrize("name, kind", [("load_balance", bool), ("log_processed_messages_count", int),
                                        ("log_processed_messages_seconds", int),
                                        ("_message_processed_verb", str)])
def test_bot_class_attributes(name, kind):
    assert isinstance(getattr(ibot.Bot, name, None), kind), (
        f"IntelMQ: Bot.{name} is no longer a class attribute of type {kind.__name__} (runtime/fanout.py)")


@pytest.mark.parametrize("method, parameters", [
    ("send_message", ["self", "messages", "path", "auto_add", "path_permissive"]),
    ("acknowledge_message", ["self"]),
    # not used by runtime/: the Elasticsearch output dumps a document it cannot index with it
    ("_dump_message", ["self", "error_traceback", "message"]),
])
def test_bot_method_signatures(method, parameters):
    func = getattr(ibot.Bot, method, None)
    assert func is not None, f"IntelMQ: Bot.{method} no longer exists"
    assert list(inspect.signature(func).parameters) == parameters, (
        f"IntelMQ: Bot.{method}{inspect.signature(func)} changed; expected the parameters {parameters}")


def test_bot_acknowledge_clears_current_message_and_acknowledges_the_source_pipeline():
    source = _method_source(ibot.Bot, "acknowledge_message")
    assert "self.__source_pipeline.acknowledge()" in source and "self.__current_message = None" in source, \
        "IntelMQ: Bot.acknowledge_message changed what it records; runtime/fanout.py must record the same"


def test_redis_pipeline_attributes():
    names = _self_attributes(ipipeline.Redis) | _self_attributes(ipipeline.Pipeline)
    for name in ("host", "port", "db", "pipe", "internal_queue", "source_queue", "destination_queues",
                 "_has_message"):
        assert name in names, f"IntelMQ: intelmq.lib.pipeline.Redis no longer has the attribute {name!r}"
    assert ipipeline.Pipeline._has_message is False, "IntelMQ: Pipeline._has_message is no longer a flag"


def test_redis_pipeline_queue_protocol():
    """fanout does what Redis.send/_acknowledge/_receive do, and moves the next message where
    _receive looks first."""
    assert "lpush(destination_queue, message)" in _method_source(ipipeline.Redis, "send"), \
        "IntelMQ: Redis.send no longer LPUSHes to each destination queue"
    assert "rpop(self.internal_queue)" in _method_source(ipipeline.Redis, "_acknowledge"), \
        "IntelMQ: Redis._acknowledge no longer RPOPs the internal queue"
    assert "lindex(self.internal_queue, -1)" in _method_source(ipipeline.Redis, "_receive"), \
        "IntelMQ: Redis._receive no longer looks at the internal queue first (fanout prefetches into it)"
    assert "f'{queues}-internal'" in _method_source(ipipeline.Pipeline, "set_queues"), \
        "IntelMQ: the internal queue is no longer named '<source queue>-internal'"


def test_public_helpers_fanout_calls():
    assert issubclass(iexceptions.PipelineError, Exception)
    assert iutils.encode("x") == b"x", "IntelMQ: intelmq.lib.utils.encode changed"
    assert "harmonization" in inspect.signature(imessage.MessageFactory.unserialize).parameters, \
        "IntelMQ: MessageFactory.unserialize no longer takes harmonization="


def test_serialize_event_is_intelmqs_serialization():
    event = imessage.Event({"source.ip": "192.0.2.1", "classification.type": "scanner"}, auto=True)
    assert fanout.serialize_event(dict(event)) == event.serialize(), \
        "IntelMQ: Message.serialize changed; runtime/fanout.serialize_event must follow it"


def test_upgrades_list_for_the_instance_state_file():
    """runtime/instance.py marks every name in intelmq.lib.upgrades.__all__ as done."""
    assert iupgrades.__all__ and all(callable(getattr(iupgrades, n)) for n in iupgrades.__all__), \
        "IntelMQ: intelmq.lib.upgrades.__all__ is no longer the list of upgrade functions"
