"""Shared pieces of the hostile-input suite (issue 12): tests/test_hostile_inputs.py (every command)
and tests/bots/test_hostile_parsers.py (every parser bot).  Builds on tests/fuzzing.py.

* :func:`hostile_settings` -- how many cases a test runs: its share of a few hundred by default,
  ``XB_HOSTILE_EXAMPLES=N`` runs N per test; derandomized and without an example database, so a CI
  run is the same every time (see docs/reliability.md, "Hostile-input suite").
* :func:`run_cli` -- ``intelmq_crossborder.cli.main(argv)`` in-process, with stdout and stderr
  encoded as a real terminal's are (stdout strict UTF-8, stderr backslashreplace), and
  :func:`assert_clean` -- no traceback, no "internal error" line, a documented exit status.
* Label strategies that carry their own oracle: each planted label says what the reader must make
  of it (a level, the "do not disclose the source" flag, or "refuse"), written down here from the
  documented rules (docs/tlp.md), never computed by the code under test.
* :func:`inject` -- JSON text with hostile pieces the json module cannot write: a duplicate key,
  a number of thousands of digits, thousands of nesting levels, a lone surrogate escape, bytes
  that are not UTF-8.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass, field
from typing import Any, Optional

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests import fuzzing

# --- settings ---------------------------------------------------------------------------------

ENV = "XB_HOSTILE_EXAMPLES"


def examples(default: int) -> int:
    """``default`` cases, or ``XB_HOSTILE_EXAMPLES`` cases per test for a larger run."""
    value = os.environ.get(ENV)
    return max(1, int(value)) if value else default


def hostile_settings(default: int, **kwargs):
    return settings(max_examples=examples(default), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True, **kwargs)


# --- running the command line in-process ---------------------------------------------------------

@dataclass
class Result:
    argv: list
    code: Any
    out: str
    err: str

    def show(self) -> str:
        """argv, status and the end of stderr (all of it, bounded, with INTELMQ_CROSSBORDER_DEBUG=1)."""
        lines = self.err.splitlines()
        tail = self.err[-8000:] if os.environ.get("INTELMQ_CROSSBORDER_DEBUG") else "\n".join(lines[-5:])
        return f"argv={self.argv!r}\nexit={self.code!r}\nstderr (last lines):\n{tail}"


def _stream(errors: str):
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="\n", write_through=True)


def run_cli(argv: list, stdin: Optional[bytes] = None) -> Result:
    """``cli.main(argv)`` with its own stdout/stderr; SystemExit (argparse) gives its code."""
    from intelmq_crossborder import cli
    out, err = _stream("strict"), _stream("backslashreplace")
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    return Result(list(argv), code, out.buffer.getvalue().decode("utf-8", "replace"),
                  err.buffer.getvalue().decode("utf-8", "replace"))


def assert_clean(result: Result, codes) -> None:
    """The rule of every command on any input: no traceback, no internal error, a documented status."""
    assert "Traceback" not in result.err, "traceback\n" + result.show()
    assert "internal error" not in result.err, "unhandled case (the last-resort guard caught it)\n" + result.show()
    assert result.code in codes, f"exit status {result.code!r} not in {sorted(codes)}\n" + result.show()


@contextlib.contextmanager
def guard(seconds: float = 30):
    """A case that runs longer than ``seconds`` fails as a hang (alias bombs, huge inputs)."""
    with fuzzing.time_guard(seconds):
        yield


# --- the label oracle ---------------------------------------------------------------------------

CLEAR, GREEN, AMBER, AMBER_STRICT, RED = 0, 1, 2, 3, 4
NAMES = {CLEAR: "CLEAR", GREEN: "GREEN", AMBER: "AMBER", AMBER_STRICT: "AMBER+STRICT", RED: "RED"}
REFUSE = "refuse"       # label-like, cannot be read: the event is refused
CHR = "chr"             # tlp:ex:chr: do not disclose the source

#: Spellings of each level that a label field (extra.tlp, extra.tlp_label, extra.csaf_tlp) accepts:
#: TLP 2.0 and 1.0, with and without prefix, MISP tags, STIX 2.1 marking ids (docs/tlp.md).
LABEL_SPELLINGS = {
    CLEAR: ["CLEAR", "clear", "TLP:CLEAR", "tlp:clear", "WHITE", "TLP:WHITE", "tlp:white", "Tlp:White",
            "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"],
    GREEN: ["GREEN", "green", "TLP:GREEN", "tlp:green", "TLP GREEN",
            "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"],
    AMBER: ["AMBER", "amber", "TLP:AMBER", "tlp:amber", " AMBER ",
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
    AMBER_STRICT: ["AMBER+STRICT", "amber+strict", "TLP:AMBER+STRICT", "tlp:amber+strict", "AMBER STRICT",
                   "TLP:AMBER_STRICT", "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"],
    RED: ["RED", "red", "TLP:RED", "tlp:red", "Red",
          "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"],
}
#: Prefixed spellings: what a tag field or any other field holds as a whole value.
PREFIXED = {
    CLEAR: ["tlp:clear", "tlp:white", "TLP:CLEAR", "TLP:WHITE"],
    GREEN: ["tlp:green", "TLP:GREEN", "TLP: GREEN"],
    AMBER: ["tlp:amber", "TLP:AMBER", "Tlp:Amber"],
    AMBER_STRICT: ["tlp:amber+strict", "TLP:AMBER+STRICT", "TLP:AMBER STRICT"],
    RED: ["tlp:red", "TLP:RED", "tlp:RED"],
}
#: The values IntelMQ's stock ``tlp`` field and our ``sharing.tlp`` accept.
STOCK = {CLEAR: "WHITE", GREEN: "GREEN", AMBER: "AMBER", RED: "RED"}
CANONICAL = dict(NAMES)
CANONICAL_LEVEL = {name: level for level, name in NAMES.items()}

#: Look-alikes: invisible characters, Cyrillic/Greek letters, full-width forms, colon look-alikes.
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"]
HOMOGLYPHS = {"a": ["\u0430", "\u03b1"], "e": ["\u0435", "\u03b5"], "p": ["\u0440", "\u03c1"],
              "t": ["\u0442", "\u03c4"], "T": ["\u0422", "\u03a4"], "P": ["\u0420", "\u03a1"],
              "E": ["\u0415", "\u0395"], "A": ["\u0410", "\u0391"], "c": ["\u0441"], "o": ["\u043e"],
              "r": ["\u0433"], "R": ["\u0280"], "l": ["\u04cf", "\u2113"], "L": ["\u029f"]}
COLONS = ["\uff1a", "\u02d0", "\u2236", "\ua789", "\u0589", "\ufe55"]


@st.composite
def lookalike(draw, base: Optional[str] = None) -> str:
    """A prefixed TLP label that looks like one and is not: always at least one non-ASCII change."""
    text = base or draw(st.sampled_from([s for level in PREFIXED.values() for s in level] + ["tlp:ex:chr"]))
    how = draw(st.sampled_from(["invisible", "homoglyph", "colon", "fullwidth", "combining"]))
    if how == "invisible":
        i = draw(st.integers(1, len(text) - 1))
        return text[:i] + draw(st.sampled_from(INVISIBLE)) + text[i:]
    if how == "homoglyph":
        spots = [i for i, ch in enumerate(text) if ch in HOMOGLYPHS]
        i = draw(st.sampled_from(spots))
        return text[:i] + draw(st.sampled_from(HOMOGLYPHS[text[i]])) + text[i + 1:]
    if how == "colon":
        return text.replace(":", draw(st.sampled_from(COLONS)), 1)
    if how == "fullwidth":
        return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)
    i = draw(st.integers(1, len(text)))
    return text[:i] + "\u034f" + text[i:]      # combining grapheme joiner: invisible, composes with nothing


@dataclass
class Plant:
    """Fields planted into an event and what the one reader must make of them."""

    fields: dict
    expects: list                     # levels (0..4), CHR or REFUSE
    where: str = ""


def expected(plants: list) -> tuple:
    """(must refuse, minimum level or None, source hidden) from the planted labels, by the documented
    rules (docs/tlp.md): every label counts, the most restrictive wins; IntelMQ's stock tlp RED beside
    sharing.tlp AMBER+STRICT (the pair the TLP expert writes) and no other RED reads AMBER+STRICT."""
    refuse = any(e == REFUSE for p in plants for e in p.expects)
    hide = any(e == CHR for p in plants for e in p.expects)
    levels = [(p.where, e) for p in plants for e in p.expects if isinstance(e, int)]
    if not levels:
        return refuse, None, hide
    stock = [lvl for where, lvl in levels if where == "tlp"]
    shared = [lvl for where, lvl in levels if where == "sharing.tlp"]
    others = [lvl for where, lvl in levels if where != "tlp"]
    if stock == [RED] and shared == [AMBER_STRICT] and RED not in others:
        return refuse, max(others), hide
    return refuse, max(lvl for _, lvl in levels), hide


def output_level(event: dict) -> Optional[int]:
    """The most restrictive label an output event carries, read with this file's own tables (the
    canonical and stock values the commands write, and the spellings the strategies plant)."""
    table = {}
    for level, names in LABEL_SPELLINGS.items():
        for name in names:
            table[" ".join(name.strip().upper().split())] = level
    for level, names in PREFIXED.items():
        for name in names:
            table[" ".join(name.strip().upper().split())] = level
    table["AMBER+STRICT"] = AMBER_STRICT
    found = []

    def read(value):
        if isinstance(value, str):
            key = " ".join(value.strip().upper().split())
            if key in table:
                found.append(table[key])
            for part in value.split(","):
                key = " ".join(part.strip().upper().split())
                if key.startswith("TLP") and key in table:
                    found.append(table[key])
        elif isinstance(value, dict):
            for sub in value.values():
                read(sub)
        elif isinstance(value, list):
            for sub in value:
                read(sub)

    for name, value in event.items():
        if name in ("sharing.tlp", "tlp", "extra.tlp", "extra.tlp_label", "extra.csaf_tlp"):
            if isinstance(value, str) and " ".join(value.strip().upper().split()) in table:
                found.append(table[" ".join(value.strip().upper().split())])
        elif isinstance(value, (str, list, dict)):
            read(value)
    return max(found) if found else None


LABEL_FIELDS = ["extra.tlp", "extra.tlp_label", "extra.csaf_tlp"]
TAG_FIELDS = ["extra.misp_tags", "extra.tags"]
OTHER_FIELDS = ["event_description.text", "comment", "extra.note", "extra.description"]
OTHER_TAGS = ["osint:source-type=\"block-or-filter-list\"", "rsit:malicious-code=\"malware\"", "type:OSINT",
              "workflow:state=\"complete\"", "misp-galaxy:threat-actor=\"APT\""]


def _tags_value(draw, names: list):
    shape = draw(st.sampled_from(["misp", "strings", "comma"]))
    if shape == "misp":
        return [{"name": n} for n in names]
    if shape == "strings":
        return list(names)
    if any("," in n for n in names):
        return list(names)
    return ",".join(names)


@st.composite
def readable_plant(draw, used: set) -> Plant:
    """A label the hub can read, in one of the shapes and fields it may hide in."""
    level = draw(st.sampled_from([CLEAR, GREEN, AMBER, AMBER_STRICT, RED]))
    shape = draw(st.sampled_from(["sharing.tlp", "tlp", "label", "label", "tags", "tags", "other", "nested"]))
    if shape == "sharing.tlp" and "sharing.tlp" not in used:
        return Plant({"sharing.tlp": CANONICAL[level]}, [level], "sharing.tlp")
    if shape == "tlp" and "tlp" not in used and level in STOCK:
        return Plant({"tlp": draw(st.sampled_from([STOCK[level], STOCK[level].lower(), "tlp:" + STOCK[level].lower()]))},
                     [level], "tlp")
    if shape == "label":
        name = draw(st.sampled_from([f for f in LABEL_FIELDS if f not in used] or ["extra.tlp_x"]))
        if name in LABEL_FIELDS:
            return Plant({name: draw(st.sampled_from(LABEL_SPELLINGS[level]))}, [level], name)
    if shape == "tags":
        name = draw(st.sampled_from([f for f in TAG_FIELDS if f not in used] or ["-"]))
        if name in TAG_FIELDS:
            levels = draw(st.lists(st.sampled_from([CLEAR, GREEN, AMBER, AMBER_STRICT, RED]), min_size=0, max_size=3))
            levels.append(level)
            names = [draw(st.sampled_from(PREFIXED[lvl])) for lvl in levels]
            names += draw(st.lists(st.sampled_from(OTHER_TAGS), max_size=2))
            names = draw(st.permutations(names))
            return Plant({name: _tags_value(draw, names)}, levels, name)
    name = draw(st.sampled_from([f for f in OTHER_FIELDS if f not in used] or ["extra.more"]))
    if name in used:
        name = f"extra.more{len(used)}"
    value = draw(st.sampled_from(PREFIXED[level]))
    if shape == "nested" and name.startswith("extra."):
        value = {"source": {"labels": [value], "n": 1}}
    return Plant({name: value}, [level], name)


@st.composite
def refused_plant(draw, used: set) -> Plant:
    """Something label-like the hub cannot read: the event must be refused, never read as unlabelled."""
    kind = draw(st.sampled_from(["lookalike-label", "lookalike-tag", "lookalike-other", "wrong-type-label",
                                 "wrong-type-tags", "tag-object", "tlp-named-field", "tlp-named-key",
                                 "unknown-label", "unknown-tag", "hide-flag"]))
    label_field = draw(st.sampled_from([f for f in LABEL_FIELDS if f not in used] or ["extra.tlp"]))
    tag_field = draw(st.sampled_from([f for f in TAG_FIELDS if f not in used] or ["extra.tags"]))
    if kind == "lookalike-label":
        return Plant({label_field: draw(lookalike())}, [REFUSE], label_field)
    if kind == "lookalike-tag":
        names = [draw(lookalike())] + draw(st.lists(st.sampled_from(OTHER_TAGS), max_size=2))
        return Plant({tag_field: _tags_value(draw, names)}, [REFUSE], tag_field)
    if kind == "lookalike-other":
        name = draw(st.sampled_from([f for f in OTHER_FIELDS if f not in used] or ["extra.more"]))
        return Plant({name: draw(lookalike())}, [REFUSE], name)
    if kind == "wrong-type-label":
        value = draw(st.sampled_from([["RED"], {"label": "RED"}, 4, True, ["tlp:red", "tlp:clear"], [None]]))
        return Plant({label_field: value}, [REFUSE], label_field)
    if kind == "wrong-type-tags":
        value = draw(st.sampled_from([4, True, {"name": "tlp:red"}, [4], [["tlp:red"]], [None]]))
        return Plant({tag_field: value}, [REFUSE], tag_field)
    if kind == "tag-object":
        value = draw(st.sampled_from([[{"label": "tlp:red"}], [{"name": ["tlp:red"]}], [{"name": 4}],
                                      [{"name": "tlp:clear"}, {"Name": "tlp:red"}]]))
        return Plant({tag_field: value}, [REFUSE], tag_field)
    if kind == "tlp-named-field":
        name = draw(st.sampled_from(["extra.tlp_level", "extra.misp_tlp", "extra.tlp2", "extra.source_tlp",
                                     "extra.t\u217cp"]))
        return Plant({name: draw(st.sampled_from(["RED", "CLEAR", "amber", ["RED"]]))}, [REFUSE], name)
    if kind == "tlp-named-key":
        key = draw(st.sampled_from(["tlp", "TLP", "tlp_label", "Tlp"]))
        return Plant({"extra.meta": {"a": [{key: draw(st.sampled_from(["RED", "CLEAR", ["RED"]]))}]}},
                     [REFUSE], "extra.meta")
    if kind == "unknown-label":
        return Plant({label_field: draw(st.sampled_from(["PURPLE", "TLP:PINK", "tlp:amber+", "AMBR", "tlp"]))},
                     [REFUSE], label_field)
    if kind == "unknown-tag":
        return Plant({tag_field: _tags_value(draw, [draw(st.sampled_from(["tlp:purple", "tlp:redd", "TLP:UNKNOWN",
                                                                          "tlp:ex:xyz"]))])},
                     [REFUSE], tag_field)
    return Plant({"sharing.do_not_disclose_source": draw(st.sampled_from(["maybe", 2, "yes please", [True]]))},
                 [REFUSE], "sharing.do_not_disclose_source")


@st.composite
def chr_plant(draw, used: set) -> Plant:
    """The "do not disclose the source" mark: the flag, or MISP's tlp:ex:chr in a tag field."""
    name = draw(st.sampled_from([f for f in TAG_FIELDS if f not in used] + ["sharing.do_not_disclose_source"]))
    if name == "sharing.do_not_disclose_source":
        return Plant({name: True}, [CHR], name)
    names = draw(st.permutations([draw(st.sampled_from(["tlp:ex:chr", "TLP:EX:CHR"]))]
                                 + draw(st.lists(st.sampled_from(OTHER_TAGS), max_size=2))))
    return Plant({name: _tags_value(draw, names)}, [CHR], name)


BASE_EVENT = {"classification.type": "scanner", "classification.taxonomy": "vulnerable",
              "source.ip": "192.0.2.10", "time.source": "2026-11-20T01:02:03+00:00"}


@dataclass
class HostileEvent:
    event: dict
    plants: list
    token: Optional[str] = None         # planted in the source fields
    source_values: list = field(default_factory=list)

    @property
    def oracle(self) -> tuple:
        return expected(self.plants)


@st.composite
def labelled_events(draw, allow_refused: bool = True, with_source: bool = True) -> HostileEvent:
    """An event with labels hidden in several shapes and fields, maybe a refused one, maybe the
    hide-source mark, and source fields holding a unique token."""
    event = dict(BASE_EVENT)
    plants: list = []
    used: set = set()
    kinds = draw(st.lists(st.sampled_from(["readable", "readable", "readable", "refused", "chr"]),
                          min_size=0, max_size=4))
    for kind in kinds:
        if kind == "refused" and not allow_refused:
            continue
        strategy = {"readable": readable_plant, "refused": refused_plant, "chr": chr_plant}[kind]
        plant = draw(strategy(frozenset(used)))
        if any(name in used for name in plant.fields):
            continue
        used.update(plant.fields)
        event.update(plant.fields)
        plants.append(plant)
    token = None
    values = []
    if with_source:
        token = draw(st.text("0123456789abcdef", min_size=16, max_size=16))
        uid = draw(st.uuids()).__str__()
        values = [f"https://feed-{token}.example.org/f.json", f"https://misp-{token}.example.net/events/view/7",
                  f"Originator {token}", uid]
        event.update({"feed.url": values[0], "event_description.url": values[1],
                      "provenance.originator": values[2], "misp.event_uuid": uid})
    return HostileEvent(event, plants, token, values)


# --- MISP documents with labels in their tags --------------------------------------------------

MISP_TYPES = {"ip-src": "198.51.100.{}", "domain": "host{}.example.com", "url": "http://bad{}.example.com/x",
              "md5": "{:032x}"}


@st.composite
def misp_tags(draw, allow_refused=True):
    """(MISP Tag list, expectations)."""
    tags, expects = [], []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["level", "level", "chr", "other"] + (["refused"] if allow_refused else [])))
        if kind == "level":
            level = draw(st.sampled_from(sorted(PREFIXED)))
            tags.append({"name": draw(st.sampled_from(PREFIXED[level]))})
            expects.append(level)
        elif kind == "chr":
            tags.append({"name": "tlp:ex:chr"})
            expects.append(CHR)
        elif kind == "other":
            tags.append({"name": draw(st.sampled_from(OTHER_TAGS))})
        else:
            tags.append(draw(st.one_of(
                lookalike().map(lambda t: {"name": t}),
                st.sampled_from([{"name": ["tlp:red"]}, {"name": 4}, {"label": "tlp:red"}, 4, None, ["tlp:red"],
                                 {"name": "tlp:purple"}]))))
            expects.append(REFUSE)
    return tags, expects


@st.composite
def misp_documents(draw):
    """(MISP JSON document, event expectations, {attribute uuid: expectations})."""
    uid = draw(st.uuids()).__str__()
    event_tags, event_expects = draw(misp_tags())
    if draw(st.integers(0, 9)) == 0:        # the whole Tag list in another shape than a list
        event_tags, event_expects = {"name": "tlp:red"}, [REFUSE]
    attributes, by_uuid = [], {}
    for i in range(draw(st.integers(1, 3))):
        atype = draw(st.sampled_from(sorted(MISP_TYPES)))
        auid = draw(st.uuids()).__str__()
        tags, expects = draw(misp_tags())
        if draw(st.integers(0, 9)) == 0:
            tags, expects = {"name": "tlp:red"}, [REFUSE]
        attribute = {"uuid": auid, "type": atype, "category": "Network activity", "to_ids": True,
                     "value": MISP_TYPES[atype].format(i + 1), "Tag": tags}
        comment_level = None
        if draw(st.booleans()):
            comment_level = draw(st.sampled_from(sorted(PREFIXED)))
            attribute["comment"] = draw(st.sampled_from(PREFIXED[comment_level]))
            expects = expects + [comment_level]
        attributes.append(attribute)
        by_uuid[auid] = expects
    info_expects = []
    info = "hostile event"
    if draw(st.booleans()):
        level = draw(st.sampled_from(sorted(PREFIXED)))
        info = draw(st.sampled_from(PREFIXED[level]))
        info_expects = [level]
    doc = {"Event": {"uuid": uid, "info": info, "Orgc": {"name": "Member CERT"}, "distribution": "1",
                     "Tag": event_tags, "Attribute": attributes}}
    return doc, event_expects + info_expects, by_uuid



# --- hostile JSON text ------------------------------------------------------------------------

MARK = "@@HOSTILE@@"
INJECTIONS = ["duplicate", "huge-int", "huge-float", "deep-list", "deep-object", "surrogate", "surrogate-key",
              "not-utf8", "nan", "infinity"]
#: The same for JSON read as YAML (NaN is a string there; a number too long for int() is refused).
YAML_INJECTIONS = ["duplicate", "huge-int", "deep-list", "deep-object", "surrogate", "surrogate-key", "not-utf8"]


def inject(doc: Any, path: tuple, kind: str, depth: int = 5000, digits: int = 5000) -> bytes:
    """JSON bytes of ``doc`` with one hostile piece at the container ``path`` (a dict or list in doc).

    ``duplicate``: a key of that dict appears a second time (with another value). The other kinds
    add a member holding a number of ``digits`` digits, ``depth`` nested brackets, a lone surrogate
    escape, or bytes that are not UTF-8."""
    doc = copy.deepcopy(doc)
    target = doc
    for part in path:
        target = target[part]
    if kind == "duplicate" and isinstance(target, dict) and target:
        key = sorted(target)[0]
        target[MARK] = MARK
        piece = json.dumps(key) + ": " + json.dumps(_other_value(target[key]))
    else:
        piece = {
            "duplicate": '"dup"', "huge-int": "9" * digits, "huge-float": "1." + "5" * digits,
            "deep-list": "[" * depth + "]" * depth, "deep-object": '{"a": ' * depth + "1" + "}" * depth,
            "surrogate": '"\\ud800 x"', "surrogate-key": '{"\\udfff": 1}', "not-utf8": '"@@BYTES@@"',
            "nan": "NaN", "infinity": "-Infinity",
        }[kind]
        if isinstance(target, dict):
            target[MARK] = MARK
            piece = '"extra.hostile": ' + piece if path == () else '"hostile": ' + piece
        elif isinstance(target, list):
            target.append(MARK)
        else:
            raise ValueError("path must name a container")
    text = json.dumps(doc, ensure_ascii=False)
    if isinstance(target, dict):
        text = text.replace(f'"{MARK}": "{MARK}"', piece, 1)
    else:
        text = text.replace(f'"{MARK}"', piece, 1)
    data = text.encode("utf-8")
    return data.replace(b"@@BYTES@@", b"\xff\xfe\xc3(", 1)


def _other_value(value):
    if isinstance(value, str):
        return "CLEAR" if value.upper() != "CLEAR" else "RED"
    return None


def containers(doc: Any) -> list:
    """Paths of every dict and list in ``doc`` (the root is ``()``)."""
    return [p for p in fuzzing._paths(doc) if isinstance(fuzzing._get(doc, p), (dict, list))]


@st.composite
def injected(draw, doc: Any, kinds=INJECTIONS, digits=(100, 4301, 5000)) -> bytes:
    """``doc`` as JSON bytes with one hostile piece at any level (``digits``: of a huge number)."""
    path = draw(st.sampled_from(containers(doc)))
    kind = draw(st.sampled_from(kinds))
    if kind == "duplicate" and not (isinstance(fuzzing._get(doc, path), dict) and fuzzing._get(doc, path)):
        kind = "deep-list"
    depth = draw(st.sampled_from([200, 1500, 5000]))
    return inject(doc, path, kind, depth=depth, digits=draw(st.sampled_from(list(digits))))


#: Wrong JSON types for a value anywhere.
WRONG_TYPES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False),
                        st.just([]), st.just({}), st.just([1, "a"]), st.just({"a": [None]}), st.just(""),
                        st.just("x" * 300)).map(copy.deepcopy)     # a fresh object each time (no cycles)


@st.composite
def wrong_types(draw, doc: Any, count: int = 3) -> Any:
    """``doc`` with up to ``count`` values (the root included) replaced by values of the wrong JSON type."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, count))):
        path = draw(st.sampled_from(fuzzing._paths(doc)))
        if not path:
            doc = draw(WRONG_TYPES)
            continue
        fuzzing._get(doc, path[:-1])[path[-1]] = draw(WRONG_TYPES)
    return doc


#: Values of schema fields with whitespace: a trailing newline passes a regex ending in ``$``.
def spaced(value: str) -> st.SearchStrategy:
    return st.sampled_from([value + "\n", value + " ", " " + value, value + "\t", value + "\r\n", value + "\u00a0",
                            value + "\u2028"])


# --- YAML hostility -----------------------------------------------------------------------------

def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """'Billion laughs': each anchor a list of ``width`` aliases of the previous one."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


YAML_HOSTILE = ["alias-bomb", "deep", "not-utf8", "surrogate", "huge-scalar", "duplicate", "list", "scalar",
                "empty", "tab", "huge-int"]


def yaml_hostile(kind: str, valid_text: str) -> bytes:
    """A YAML document that every reader must refuse (or, for ``empty``, treat as empty)."""
    if kind == "alias-bomb":
        return alias_bomb().encode()
    if kind == "deep":
        return ("[" * 20000).encode()
    if kind == "not-utf8":
        return valid_text.encode() + b"\nbad: \"\xff\xfe\"\n"
    if kind == "surrogate":
        return valid_text.encode() + b'\nbad: "\\ud800"\n'
    if kind == "huge-scalar":
        return valid_text.encode() + b"\nbad: " + b"A" * (300 * 1024) + b"\n"
    if kind == "duplicate":
        first = valid_text.splitlines()[0]
        return (valid_text + first + "\n").encode()
    if kind == "list":
        return ("- " + "\n  ".join(valid_text.splitlines()) + "\n").encode()
    if kind == "scalar":
        return b"just a string\n"
    if kind == "empty":
        return b""
    if kind == "tab":
        return valid_text.replace("  ", "\t", 1).encode() if "  " in valid_text else b"a:\n\t- b\n"
    return valid_text.encode() + b"\nbig: " + b"9" * 5000 + b"\n"


# --- exchange bundles (as tests/test_fuzz_bundle.py builds them) -----------------------------------

def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


def tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def signed_bundle(key, key_id: str, manifest: dict, data: bytes, manifest_bytes: Optional[bytes] = None) -> bytes:
    mbytes = manifest_bytes if manifest_bytes is not None else json.dumps(manifest).encode()
    sig = base64.b64encode(key.sign(mbytes)).decode()
    signatures = json.dumps({"signatures": [{"algorithm": "ed25519", "key_id": key_id, "value": sig}]}).encode()
    return tar([("manifest.json", mbytes), ("signatures.json", signatures), ("data.jsonl.gz", data)])


def manifest_for(data: bytes, count: int, sender: str, recipient: str, fmt: str, version) -> dict:
    return {"format": fmt, "format_version": version,
            "bundle_id": "0b7a3f7e-5d0c-4a4e-9a55-1c1f6f0e7a01", "sender": sender, "recipient": recipient,
            "sequence": 1, "created": "2026-11-20T02:00:00Z",
            "window": {"start": "2026-11-20T01:00:00Z", "end": "2026-11-20T02:00:00Z"}, "event_count": count,
            "data": {"member": "data.jsonl.gz", "encoding": "jsonl", "compression": "gzip",
                     "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            "signature": {"algorithms": ["ed25519"]}}
