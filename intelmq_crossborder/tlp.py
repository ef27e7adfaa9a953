"""Traffic Light Protocol (TLP 2.0) core: one table, one parser, conversions out.

Every spelling of a TLP label that the hub meets in the wild is a row of
``SPELLINGS``: plain and prefixed TLP 2.0 and 1.0 labels, MISP ``tlp`` taxonomy
tags, CSAF 2.0/2.1 ``document.distribution.tlp.label`` values, STIX 2.1
marking-definition ids (TLP 1.0 and the TLP 2.0 extension) and IntelMQ's stock
``tlp`` values.  Parsing and the conversions back out both read that table, so a
spelling cannot be understood in one direction and forgotten in the other.

The parser never guesses: a value that is not in the table raises
:class:`UnknownTLPError` naming the value.  What to do with a missing label is a
policy decision and lives in :mod:`intelmq_crossborder.policy`, not here.

Where a target format cannot express a level (CSAF 2.0 and TLP 1.0 have no
AMBER+STRICT, IntelMQ's stock field has no CLEAR), the conversion picks the
nearest label that is *at least as restrictive*: AMBER+STRICT becomes RED.
Sharing less than allowed is a nuisance; sharing more is a broken promise.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Optional

__all__ = [
    "Level", "ParsedTLP", "UnknownTLPError", "SPELLINGS", "CHATHAM_HOUSE_TAG",
    "parse", "parse_level", "parse_csaf", "parse_tags", "most_restrictive",
    "to_misp_tag", "to_csaf_label", "to_stix_marking_id", "to_intelmq_stock",
    "STANDARDS",
]


class Level(enum.IntEnum):
    """TLP 2.0 levels, ordered from least to most restrictive."""

    CLEAR = 0
    GREEN = 1
    AMBER = 2
    AMBER_STRICT = 3
    RED = 4

    @property
    def label(self) -> str:
        """The canonical TLP 2.0 label without prefix, e.g. ``AMBER+STRICT``."""
        return "AMBER+STRICT" if self is Level.AMBER_STRICT else self.name

    @classmethod
    def from_label(cls, label: str) -> "Level":
        """The level of a canonical label (``AMBER+STRICT``); strict, no spelling variants."""
        try:
            return cls[label.replace("+", "_")]
        except KeyError:
            raise UnknownTLPError(label) from None

    def __str__(self) -> str:
        return self.label


class UnknownTLPError(ValueError):
    """A value that is not a TLP label in any supported standard."""

    def __init__(self, value, context: str = ""):
        self.value = value
        where = f" in {context}" if context else ""
        super().__init__(f"unknown TLP label {value!r}{where}")


# Standards a spelling can come from.
TLP2 = "tlp-2.0"
TLP1 = "tlp-1.0"
TLP_ANY = "tlp"             # GREEN/AMBER/RED: the same word in TLP 1.0 and 2.0
MISP = "misp-taxonomy"
CSAF20 = "csaf-2.0"
CSAF21 = "csaf-2.1"
STIX_TLP1 = "stix-tlp-1.0"
STIX_TLP2 = "stix-tlp-2.0"
INTELMQ = "intelmq"
STANDARDS = (TLP2, TLP1, TLP_ANY, MISP, CSAF20, CSAF21, STIX_TLP1, STIX_TLP2, INTELMQ)

#: The MISP ``tlp`` taxonomy tag that is not a level but the Chatham House
#: flag: the information may be used, its source must not be disclosed.
CHATHAM_HOUSE_TAG = "tlp:ex:chr"


@dataclass(frozen=True)
class Spelling:
    """One row of the table.

    ``parse``: the parser accepts this text as this level.
    ``export``: conversions to ``standard`` write this text for this level.
    A row may do both, or only one (e.g. CSAF 2.0 has no AMBER+STRICT, so the
    export row for AMBER+STRICT writes ``RED`` and is not a parse row).
    """

    standard: str
    text: str
    level: Level
    parse: bool = True
    export: bool = True


L = Level
_TLP1_STIX = {
    L.CLEAR: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",  # TLP:WHITE
    L.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    L.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    L.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
_TLP2_STIX = {
    L.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    L.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    L.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    L.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    L.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}

SPELLINGS: tuple[Spelling, ...] = (
    # TLP 2.0 plain labels (prefix, case and "AMBER STRICT" handled by normalisation)
    Spelling(TLP2, "CLEAR", L.CLEAR),
    Spelling(TLP_ANY, "GREEN", L.GREEN),
    Spelling(TLP_ANY, "AMBER", L.AMBER),
    Spelling(TLP2, "AMBER+STRICT", L.AMBER_STRICT),
    Spelling(TLP_ANY, "RED", L.RED),
    # TLP 1.0
    Spelling(TLP1, "WHITE", L.CLEAR),
    Spelling(TLP1, "GREEN", L.GREEN, parse=False),
    Spelling(TLP1, "AMBER", L.AMBER, parse=False),
    Spelling(TLP1, "RED", L.AMBER_STRICT, parse=False),   # no AMBER+STRICT in 1.0
    Spelling(TLP1, "RED", L.RED, parse=False),
    # MISP tlp taxonomy (machine tags, lowercase)
    Spelling(MISP, "tlp:clear", L.CLEAR),
    Spelling(MISP, "tlp:white", L.CLEAR, export=False),
    Spelling(MISP, "tlp:green", L.GREEN),
    Spelling(MISP, "tlp:amber", L.AMBER),
    Spelling(MISP, "tlp:amber+strict", L.AMBER_STRICT),
    Spelling(MISP, "tlp:red", L.RED),
    # CSAF 2.0 document.distribution.tlp.label: WHITE/GREEN/AMBER/RED
    Spelling(CSAF20, "WHITE", L.CLEAR),
    Spelling(CSAF20, "GREEN", L.GREEN),
    Spelling(CSAF20, "AMBER", L.AMBER),
    Spelling(CSAF20, "RED", L.AMBER_STRICT, parse=False),
    Spelling(CSAF20, "RED", L.RED),
    # CSAF 2.1: CLEAR/GREEN/AMBER/AMBER+STRICT/RED
    Spelling(CSAF21, "CLEAR", L.CLEAR),
    Spelling(CSAF21, "GREEN", L.GREEN),
    Spelling(CSAF21, "AMBER", L.AMBER),
    Spelling(CSAF21, "AMBER+STRICT", L.AMBER_STRICT),
    Spelling(CSAF21, "RED", L.RED),
    # STIX 2.1 marking definitions
    *(Spelling(STIX_TLP1, mid, lvl) for lvl, mid in _TLP1_STIX.items()),
    Spelling(STIX_TLP1, _TLP1_STIX[L.RED], L.AMBER_STRICT, parse=False),
    *(Spelling(STIX_TLP2, mid, lvl) for lvl, mid in _TLP2_STIX.items()),
    # IntelMQ's stock `tlp` field (harmonization type TLP): WHITE/GREEN/AMBER/RED
    Spelling(INTELMQ, "WHITE", L.CLEAR),
    Spelling(INTELMQ, "GREEN", L.GREEN),
    Spelling(INTELMQ, "AMBER", L.AMBER),
    Spelling(INTELMQ, "RED", L.AMBER_STRICT, parse=False),
    Spelling(INTELMQ, "RED", L.RED),
)


@dataclass(frozen=True)
class ParsedTLP:
    """What a value said: a level (None for the Chatham House flag alone), the
    standard the spelling belongs to, and whether it was the Chatham House flag."""

    level: Optional[Level]
    standard: str
    chatham_house: bool = False

    @property
    def label(self) -> Optional[str]:
        return None if self.level is None else self.level.label


def _normalise(value: str) -> str:
    """Upper-case, strip a ``TLP:`` / ``TLP `` prefix, unify ``AMBER STRICT`` spellings."""
    text = " ".join(value.strip().upper().split())
    for prefix in ("TLP:", "TLP "):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
            break
    for variant in ("AMBER + STRICT", "AMBER STRICT", "AMBER_STRICT", "AMBER-STRICT"):
        text = text.replace(variant, "AMBER+STRICT")
    return text


def _build_index():
    plain, misp, stix, csaf = {}, {}, {}, {}
    for row in SPELLINGS:
        if not row.parse:
            continue
        if row.standard == MISP:
            misp[row.text] = row
        elif row.standard in (STIX_TLP1, STIX_TLP2):
            stix[row.text] = row
        elif row.standard in (CSAF20, CSAF21):
            csaf[(row.standard, row.text)] = row
        elif row.standard in (TLP2, TLP1, TLP_ANY):
            plain[row.text] = row
    export = {}
    for row in SPELLINGS:
        if row.export:
            export.setdefault((row.standard, row.level), row.text)
    return plain, misp, stix, csaf, export


_PLAIN, _MISP, _STIX, _CSAF, _EXPORT = _build_index()


def parse(value, context: str = "") -> ParsedTLP:
    """Parse any supported spelling of a TLP label.

    ``context`` (a file and field, say) is only used in the error message.
    Raises :class:`UnknownTLPError` for anything that is not a TLP label.
    """
    if not isinstance(value, str) or not value.strip():
        raise UnknownTLPError(value, context)
    raw = value.strip()
    lowered = raw.lower()
    if lowered == CHATHAM_HOUSE_TAG:
        return ParsedTLP(None, MISP, chatham_house=True)
    if lowered.startswith("marking-definition--"):
        row = _STIX.get(lowered)
        if row is None:
            raise UnknownTLPError(value, context)
        return ParsedTLP(row.level, row.standard)
    # A lowercase machine tag is the MISP taxonomy form; other case is a prefixed label.
    if raw.startswith("tlp:") and raw == lowered:
        row = _MISP.get(lowered)
        if row is not None:
            return ParsedTLP(row.level, MISP)
    row = _PLAIN.get(_normalise(raw))
    if row is None:
        raise UnknownTLPError(value, context)
    return ParsedTLP(row.level, row.standard)


def parse_level(value, context: str = "") -> Level:
    """Parse a value that must be a level (the Chatham House flag is not one)."""
    parsed = parse(value, context)
    if parsed.level is None:
        raise UnknownTLPError(value, (context + ": " if context else "") + "a flag, not a TLP level")
    return parsed.level


def parse_csaf(label, csaf_version: str = "2.0", context: str = "") -> ParsedTLP:
    """Parse ``document.distribution.tlp.label`` of a CSAF document.

    CSAF 2.0 allows WHITE/GREEN/AMBER/RED and CSAF 2.1 CLEAR/GREEN/AMBER/AMBER+STRICT/RED.
    A label of the other version is accepted (real documents mix them up) and
    reported with the standard it actually belongs to.
    """
    std = CSAF21 if str(csaf_version).startswith("2.1") else CSAF20
    text = _normalise(label) if isinstance(label, str) else label
    for candidate in (std, CSAF21 if std == CSAF20 else CSAF20):
        row = _CSAF.get((candidate, text))
        if row is not None:
            return ParsedTLP(row.level, candidate)
    raise UnknownTLPError(label, context or f"CSAF {csaf_version} document.distribution.tlp.label")


def parse_tags(tags: Iterable[str], context: str = "") -> tuple[Optional[Level], bool]:
    """Read the TLP labels out of a list of tags (MISP tags, say).

    Tags that do not belong to the ``tlp`` namespace are ignored; a tag in the
    namespace that is not a known label raises.  Returns the most restrictive
    level (None when there is none) and whether the Chatham House flag was set.
    """
    levels, chr_flag = [], False
    for tag in tags:
        tag = tag.strip()
        if not tag.lower().startswith("tlp:") and not tag.lower().startswith("tlp "):
            continue
        parsed = parse(tag, context)
        if parsed.chatham_house:
            chr_flag = True
        else:
            levels.append(parsed.level)
    return (max(levels) if levels else None), chr_flag


def most_restrictive(levels: Iterable) -> Level:
    """The most restrictive of several levels or labels; raises ValueError when empty."""
    parsed = [lvl if isinstance(lvl, Level) else parse_level(lvl) for lvl in levels]
    if not parsed:
        raise ValueError("no TLP label given")
    return max(parsed)


def _export(standard: str, level) -> str:
    level = level if isinstance(level, Level) else parse_level(level)
    return _EXPORT[(standard, level)]


def to_misp_tag(level) -> str:
    """MISP ``tlp`` taxonomy tag, e.g. ``tlp:amber+strict``."""
    return _export(MISP, level)


def to_csaf_label(level, csaf_version: str = "2.0") -> str:
    """CSAF ``document.distribution.tlp.label``; AMBER+STRICT is RED in CSAF 2.0."""
    return _export(CSAF21 if str(csaf_version).startswith("2.1") else CSAF20, level)


def to_stix_marking_id(level, tlp_version: str = "2.0") -> str:
    """STIX 2.1 marking-definition id of the TLP 2.0 extension (default) or of TLP 1.0."""
    return _export(STIX_TLP1 if str(tlp_version).startswith("1") else STIX_TLP2, level)


def to_intelmq_stock(level) -> str:
    """Value for IntelMQ's stock ``tlp`` field; CLEAR is WHITE and AMBER+STRICT is RED."""
    return _export(INTELMQ, level)


@dataclass(frozen=True)
class EventLabels:
    """The TLP labels found on one event: the most restrictive level (None if
    there was none), whether the Chatham House flag was set, and where each
    label came from as ``(field, ParsedTLP)``."""

    level: Optional[Level]
    chatham_house: bool
    found: tuple = ()


def _is_tag_list(field_name: str, value) -> bool:
    return isinstance(value, (list, tuple)) or field_name.endswith("tags") or (
        isinstance(value, str) and "," in value)


def read_event_labels(event, fields: Iterable[str]) -> EventLabels:
    """Collect the TLP labels an event carries in ``fields`` (a mapping access).

    A field holding one value (``tlp``, ``extra.tlp``, ``extra.csaf_tlp``) must be
    a TLP label.  A field holding tags (a list, a comma-separated string, or a
    name ending in ``tags`` such as ``extra.misp_tags``) may hold other tags too;
    only those in the ``tlp:`` namespace are read, and they must be valid.
    Raises :class:`UnknownTLPError` naming the field for a label it cannot read.
    """
    found = []
    for name in fields:
        value = event.get(name) if hasattr(event, "get") else None
        if value is None or value == "" or value == []:
            continue
        if _is_tag_list(name, value):
            tags = value if isinstance(value, (list, tuple)) else value.split(",")
            for tag in tags:
                if not isinstance(tag, str):
                    raise UnknownTLPError(tag, f"field {name}")
                if tag.strip().lower().startswith(("tlp:", "tlp ")):
                    found.append((name, parse(tag, f"field {name}")))
        else:
            found.append((name, parse(value, f"field {name}")))
    levels = [p.level for _, p in found if p.level is not None]
    chr_flag = any(p.chatham_house for _, p in found)
    return EventLabels(max(levels) if levels else None, chr_flag, tuple(found))
