"""Traffic Light Protocol (TLP 2.0) core: one table, one parser, conversions out.

Every spelling of a TLP label that the hub meets in the wild is a row of
``SPELLINGS``: plain and prefixed TLP 2.0 and 1.0 labels, MISP ``tlp`` taxonomy
tags, CSAF 2.0/2.1 ``document.distribution.tlp.label`` values, STIX 2.1
marking-definition ids (TLP 1.0, the TLP 2.0 extension and OpenCTI's own) and IntelMQ's stock
``tlp`` values.  Parsing and the conversions back out both read that table, so a
spelling cannot be understood in one direction and forgotten in the other.

The parser never guesses: a value that is not in the table raises
:class:`UnknownTLPError` naming the value.  What to do with a missing label is a
policy decision and lives in :mod:`intelmq_crossborder.policy.decide`, not here.

Where a target format cannot express a level (CSAF 2.0 and TLP 1.0 have no
AMBER+STRICT, IntelMQ's stock field has no CLEAR), the conversion picks the
nearest label that is *at least as restrictive*: AMBER+STRICT becomes RED.
Sharing less than allowed is a nuisance; sharing more is a broken promise.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = [
    "Level", "ParsedTLP", "UnknownTLPError", "SPELLINGS", "CHATHAM_HOUSE_TAG",
    "parse", "parse_level", "parse_csaf", "parse_tags", "most_restrictive",
    "to_misp_tag", "to_csaf_label", "to_stix_marking_id", "to_intelmq_stock", "STIX_MARKING_VERSIONS",
    "STANDARDS", "LABEL_FIELDS", "TAG_FIELDS", "HIDE_SOURCE_FIELD", "SOURCE_FIELDS", "LabelError",
    "EventTLP", "event_tlp", "skeleton", "is_label_like",
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


class UnknownTLPError(CrossBorderError, ValueError):
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
STIX_OPENCTI = "stix-opencti"
INTELMQ = "intelmq"
STANDARDS = (TLP2, TLP1, TLP_ANY, MISP, CSAF20, CSAF21, STIX_TLP1, STIX_TLP2, STIX_OPENCTI, INTELMQ)

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
# OpenCTI's own TLP marking ids: OpenCTI-Platform/opencti,
# opencti-platform/opencti-graphql/src/schema/identifier.js (MARKING_TLP_* and
# STATIC_STANDARD_IDS, commit 001c3155be1d20533b822f24c413f307a8ee906d).  OpenCTI keeps the
# TLP 1.0 ids for CLEAR (the WHITE id, renamed), GREEN, AMBER and RED and has an id of its own
# for TLP:AMBER+STRICT; it does not use the OASIS TLP 2.0 extension ids.
_OPENCTI_AMBER_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"
_OPENCTI_STIX = {**_TLP1_STIX, L.AMBER_STRICT: _OPENCTI_AMBER_STRICT}

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
    # OpenCTI: only its AMBER+STRICT id is its own; the others are read as the TLP 1.0 rows above
    *(Spelling(STIX_OPENCTI, mid, lvl, parse=lvl is L.AMBER_STRICT) for lvl, mid in _OPENCTI_STIX.items()),
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
        elif row.standard in (STIX_TLP1, STIX_TLP2, STIX_OPENCTI):
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


STIX_MARKING_VERSIONS = {"2.0": STIX_TLP2, "2": STIX_TLP2, "1.0": STIX_TLP1, "1": STIX_TLP1,
                         "opencti": STIX_OPENCTI}


def to_stix_marking_id(level, tlp_version: str = "2.0") -> str:
    """STIX 2.1 marking-definition id: ``"2.0"`` the TLP 2.0 extension's (default), ``"1.0"``
    TLP 1.0's (AMBER+STRICT is RED), ``"opencti"`` OpenCTI's (its own id for AMBER+STRICT)."""
    standard = STIX_MARKING_VERSIONS.get(str(tlp_version).strip().lower())
    if standard is None:
        raise ValueError(f"unknown STIX TLP marking version {tlp_version!r}; "
                         f"one of {', '.join(sorted(STIX_MARKING_VERSIONS))}")
    return _export(standard, level)


def to_intelmq_stock(level) -> str:
    """Value for IntelMQ's stock ``tlp`` field; CLEAR is WHITE and AMBER+STRICT is RED."""
    return _export(INTELMQ, level)


# --- the one reader of an event's labels ----------------------------------------------
#
# Every module that needs an event's TLP level or its "do not disclose the source"
# flag calls :func:`event_tlp`, and nothing else (tests/test_single_label_reader.py
# fails when a module outside this one reads the label fields).  docs/tlp.md states
# the rules; the short form: every label counts, the most restrictive wins, and
# anything label-like that cannot be read is refused with the field named.

#: Fields that hold one TLP label, in any spelling of :data:`SPELLINGS`.
LABEL_FIELDS = ("sharing.tlp", "tlp", "extra.tlp", "extra.tlp_label", "extra.csaf_tlp")
#: Fields that hold tags: MISP's list of ``{"name": ...}``, a list of strings, or one
#: comma-separated string.  Tags outside the ``tlp:`` namespace are not labels.
TAG_FIELDS = ("extra.misp_tags", "extra.tags")
#: The "do not disclose the source" flag (MISP's ``tlp:ex:chr`` in a tag sets it too).
HIDE_SOURCE_FIELD = "sharing.do_not_disclose_source"
#: Fields that name the originator or point at its systems (its MISP, its advisory
#: server, its feed).  Hidden when the source must not be disclosed; an agreement's
#: ``originator_fields`` may add to this list, never take from it.
SOURCE_FIELDS = (
    "provenance.originator", "feed.provider", "feed.name", "feed.code", "feed.url", "feed.documentation",
    "event_description.url", "csaf.publisher", "csaf.document_url", "csaf.tracking_id",
    "misp.event_uuid", "misp.attribute_uuid", "misp.sharing_group_uuid", "extra.misp_object_uuid",
)

_KNOWN_FIELDS = frozenset(LABEL_FIELDS) | frozenset(TAG_FIELDS) | {HIDE_SOURCE_FIELD}
_MAX_DEPTH = 32
_MAX_NODES = 100_000
_TRUE = (True, 1, "true", "True", "TRUE", "1", "yes")
_FALSE = (False, 0, "false", "False", "FALSE", "0", "no")

# Letters that look like the Latin ones of TLP labels and tags (Cyrillic, Greek, small
# capitals, IPA) and colon look-alikes that NFKC does not fold.  Used only to recognise
# a look-alike label; a look-alike is refused, never read as the label it imitates.
_CONFUSABLES = str.maketrans({
    "а": "a", "А": "A", "в": "b", "В": "B", "с": "c", "С": "C", "ԁ": "d", "е": "e", "Е": "E",
    "ɡ": "g", "һ": "h", "Н": "H", "і": "i", "І": "I", "ӏ": "l", "Ӏ": "l", "к": "k", "К": "K",
    "м": "m", "М": "M", "п": "n", "о": "o", "О": "O", "р": "p", "Р": "P", "г": "r", "ѕ": "s",
    "Ѕ": "S", "т": "t", "Т": "T", "у": "y", "х": "x", "Х": "X", "ԝ": "w", "Ԝ": "W",
    "α": "a", "Α": "A", "Β": "B", "ε": "e", "Ε": "E", "Η": "H", "ι": "i", "Ι": "I", "κ": "k",
    "Κ": "K", "Μ": "M", "ν": "v", "Ν": "N", "ο": "o", "Ο": "O", "ρ": "p", "Ρ": "P", "τ": "t",
    "Τ": "T", "υ": "u", "χ": "x", "Χ": "X",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ʟ": "l",
    "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ᴛ": "t", "ᴜ": "u", "ᴡ": "w",
    "ː": ":", "˸": ":", "∶": ":", "꞉": ":", "׃": ":", "։": ":", "᛬": ":", "⁚": ":",
    "ǀ": "l", "│": "l", "∣": "l", "ℓ": "l",
})


def skeleton(text: str) -> str:
    """``text`` as it looks: NFKC, invisible format characters (zero-width space,
    joiners, bidi marks) and combining marks removed, look-alike letters and colons
    folded to ASCII, lower case.  ``tlp\\u200b:rеd`` (Cyrillic е) becomes ``tlp:red``."""
    import unicodedata
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Mn", "Me", "Cc")
                     or ch in "\t\n\r")
    return folded.translate(_CONFUSABLES).lower()


_TLP_PREFIX = ("tlp:", "tlp ", "tlp-", "tlp_", "tlp=", "tlp.")


def is_label_like(text: str) -> bool:
    """Whether a whole value looks like a TLP label or tag with its prefix (``TLP:RED``,
    ``tlp:amber``, a STIX TLP marking id), in any spelling or look-alike."""
    look = " ".join(skeleton(text).split())
    return look.startswith(_TLP_PREFIX) or (look.startswith("marking-definition--") and look in _STIX)


_WHOLE_LABEL = re.compile(r"tlp ?[: ] ?(clear|white|green|amber( ?[+_ -] ?strict)?|red|ex:chr)")


def _is_whole_label(text: str) -> bool:
    """Whether a value of an ordinary field is, as a whole, a prefixed TLP label or a STIX
    TLP marking id (also in a look-alike spelling).  Free text that mentions TLP is not."""
    if len(text) > 120:
        return False
    look = " ".join(skeleton(text).split())
    return bool(_WHOLE_LABEL.fullmatch(look)) or look in _STIX


class LabelError(UnknownTLPError):
    """An event carries something label-like that cannot be read: the event is refused.

    ``field`` names the field (``extra.misp_tags[2]``, ``extra.misp.Tag[0].name``),
    ``value`` is what it held (a label or tag, never other event data) and ``reason``
    says why it was refused."""

    def __init__(self, field_name: str, value, reason: str):
        self.field = field_name
        self.reason = reason
        ValueError.__init__(self, f"field {field_name}: {reason}")
        self.value = value


@dataclass(frozen=True)
class EventTLP:
    """What :func:`event_tlp` read from one event.

    ``level``: the most restrictive label found, None when the event carries none.
    ``hide_source``: the source must not be disclosed (the flag or ``tlp:ex:chr``).
    ``found``: ``(field, level label or "ex:chr")`` for every label read.
    ``why``: one sentence for logs and the audit trail (labels and fields only).
    """

    level: Optional[Level]
    hide_source: bool
    found: tuple = ()

    @property
    def label(self) -> Optional[str]:
        return None if self.level is None else self.level.label

    @property
    def field(self) -> str:
        """The field the effective level was read from (the first, for a refusal's message);
        ``sharing.tlp`` when the event carries no label."""
        return next((name for name, label in self.found if label == self.label), "sharing.tlp")

    @property
    def why(self) -> str:
        found, hide = self.found, self.hide_source
        if self.level is None:
            return "no TLP label" + ("; the source is hidden" if hide else "")
        level = self.level.label
        stock_export = _stock_red_reads_amber_strict(found)
        why = f"TLP:{level} from {', '.join(sorted({name for name, lvl in found if lvl == level}))}"
        if stock_export:
            why += " (stock tlp RED is its spelling of AMBER+STRICT)"
        lower = sorted({f"{name} {lvl}" for name, lvl in found
                        if lvl not in ("ex:chr", level) and not (stock_export and name == "tlp")})
        if lower:
            why += f" (lower labels ignored: {', '.join(lower)})"
        return why + ("; the source is hidden" if hide else "")


_LOOKALIKE = "look-alike spelling of a TLP label (invisible, full-width or non-Latin characters); " \
             "refused, not read as unlabelled"
_READ_CACHE: dict = {}


def _read_text(value: str, in_tags: bool) -> Optional[str]:
    """The label of one string: ``"RED"``, ``"ex:chr"``, None for a tag of another
    namespace; raises ValueError with the reason when it is label-like but unreadable.
    Cached: the same few spellings recur on every event."""
    key = (value, in_tags)
    hit = _READ_CACHE.get(key)
    if hit is None:
        try:
            hit = ("ok", _read_text_uncached(value, in_tags))
        except ValueError as exc:
            hit = ("refused", str(exc))
        if len(_READ_CACHE) < 4096 and len(value) < 256:
            _READ_CACHE[key] = hit
    if hit[0] == "refused":
        raise ValueError(hit[1])
    return hit[1]


def _read_text_uncached(value: str, in_tags: bool) -> Optional[str]:
    if in_tags and not is_label_like(value):
        return None
    look = " ".join(skeleton(value).split())
    if not value.isascii() and " ".join(value.lower().split()) != look:
        raise ValueError(_LOOKALIKE)
    try:
        parsed = parse(value)
    except UnknownTLPError:
        raise ValueError(f"{value!r} is not a TLP label; refused, not read as unlabelled") from None
    return "ex:chr" if parsed.chatham_house else parsed.level.label


def _label_value(field_name: str, value, found: list, in_tags: bool) -> None:
    """Read one value that must be a label (``in_tags``: a tag that may be another namespace's)."""
    if not isinstance(value, str):
        kind = type(value).__name__
        raise LabelError(field_name, value, f"a TLP {'tag' if in_tags else 'label'} must be a string, "
                                            f"not a {kind}; the event is refused, not read as unlabelled")
    try:
        label = _read_text(value, in_tags)
    except ValueError as exc:
        raise LabelError(field_name, value, str(exc)) from None
    if label is not None:
        found.append((field_name, label))


def _tag_list(field_name: str, value, found: list) -> None:
    if isinstance(value, str):
        items = [(f"{field_name}[{i}]", part) for i, part in enumerate(value.split(","))]
    elif isinstance(value, (list, tuple)):
        items = []
        for i, tag in enumerate(value):
            where = f"{field_name}[{i}]"
            if isinstance(tag, dict):
                if not isinstance(tag.get("name"), str):
                    raise LabelError(where, None, "a tag object without a string 'name' (MISP's form is "
                                                  "{\"name\": \"tlp:amber\"}); refused")
                items.append((f"{where}.name", tag["name"]))
                # the tag object's other keys: a TLP-named key is refused, a whole label counts
                _walk_other(where, {k: v for k, v in tag.items() if k != "name"}, found)
            elif isinstance(tag, str):
                items.append((where, tag))
            else:
                raise LabelError(where, None, f"a tag must be a string or MISP's {{\"name\": ...}}, not a "
                                              f"{type(tag).__name__}; refused")
    else:
        raise LabelError(field_name, None, f"tags must be a list (MISP's list of {{\"name\": ...}}) or a "
                                           f"comma-separated string, not a {type(value).__name__}; refused")
    for where, tag in items:
        _label_value(where, tag, found, in_tags=True)


_NAME_SAYS_TLP: dict = {}


def _name_says_tlp(name: str) -> bool:
    says = _NAME_SAYS_TLP.get(name)
    if says is None:
        says = "tlp" in (name.lower() if name.isascii() else skeleton(name))
        if len(_NAME_SAYS_TLP) < 4096:       # field names repeat; hostile ones must not grow it
            _NAME_SAYS_TLP[name] = says
    return says


def _walk_other(field_name: str, value, found: list) -> None:
    """Any other field: a key that says TLP is refused; a whole value that is a label counts."""
    stack = [(field_name, value, 0)]
    nodes = 0
    while stack:
        where, item, depth = stack.pop()
        nodes += 1
        if depth > _MAX_DEPTH or nodes > _MAX_NODES:
            raise LabelError(where, None, "nested too deeply (or too large) to read its labels; refused")
        if isinstance(item, str):
            low = item.lower()
            if (not item.isascii() or "tlp" in low or "marking-definition--" in low) and _is_whole_label(item):
                _label_value(where, item, found, in_tags=True)
        elif isinstance(item, dict):
            for key, sub in item.items():
                key_text = str(key)
                if _name_says_tlp(key_text):
                    raise LabelError(f"{where}.{key_text}", None, "a field whose name says TLP but is not "
                                     "a label field the hub reads (docs/tlp.md); refused")
                stack.append((f"{where}.{key_text}", sub, depth + 1))
        elif isinstance(item, (list, tuple)):
            for i, sub in enumerate(item):
                stack.append((f"{where}[{i}]", sub, depth + 1))


def _hide_flag(value) -> bool:
    if value is None or value == "":
        return False
    if value in _TRUE and not isinstance(value, float):
        return True
    if value in _FALSE and not isinstance(value, float):
        return False
    raise LabelError(HIDE_SOURCE_FIELD, value, "not a boolean; refused rather than guessed")


def _stock_red_reads_amber_strict(found: list) -> bool:
    """IntelMQ's stock ``tlp`` cannot say AMBER+STRICT: the TLP expert writes RED there
    beside ``sharing.tlp`` AMBER+STRICT.  Exactly that pair, with no other RED, is read as
    AMBER+STRICT; a stock RED beside any other AMBER+STRICT label stays RED."""
    stock = [lvl for name, lvl in found if name == "tlp"]
    shared = [lvl for name, lvl in found if name == "sharing.tlp"]
    others = [lvl for name, lvl in found if name != "tlp"]
    return stock == ["RED"] and shared == ["AMBER+STRICT"] and "RED" not in others


def event_tlp(event: Mapping[str, Any]) -> EventTLP:
    """The effective TLP of a flat event (an IntelMQ Event or dict), and whether its
    source must be hidden.  THE reader of an event's labels: every module uses it.

    - Every label counts, ``sharing.tlp`` included: the most restrictive wins.
    - :data:`LABEL_FIELDS` hold one label in any spelling; :data:`TAG_FIELDS` hold tags,
      of which the ``tlp:`` ones are read; in any other field, a whole value that is a
      prefixed TLP label (``TLP:RED``, ``tlp:amber``, a STIX TLP marking id) counts too.
    - ``tlp:ex:chr`` anywhere, or :data:`HIDE_SOURCE_FIELD` true, hides the source.
    - Refused with :class:`LabelError` naming the field: a label that is not a string,
      an unknown or look-alike label, tags in another shape than MISP's, a field whose
      name says TLP but is not a label field, a non-boolean hide flag, nesting beyond
      what can be read.  Never read as unlabelled.
    """
    found: list = []
    hide = False
    for name, value in event.items():
        if value is None:
            continue
        if name in LABEL_FIELDS:
            if value != "":
                _label_value(name, value, found, in_tags=False)
        elif name in TAG_FIELDS:
            _tag_list(name, value, found)
        elif name == HIDE_SOURCE_FIELD:
            hide = _hide_flag(value)
        elif _name_says_tlp(name):
            raise LabelError(name, None, "a field whose name says TLP but is not a label field the hub "
                                         "reads (docs/tlp.md); refused")
        elif type(value) is str:
            # the common case, kept cheap: an ASCII value that cannot be a label
            low = value.lower()
            if value.isascii() and "tlp" not in low and "marking-definition--" not in low:
                continue
            _walk_other(name, value, found)
        elif isinstance(value, (str, dict, list, tuple)):
            _walk_other(name, value, found)
    hide = hide or any(lvl == "ex:chr" for _, lvl in found)
    levels = [lvl for _, lvl in found if lvl != "ex:chr"]
    if not levels:
        return EventTLP(None, hide, tuple(found))
    if len(levels) > 1 and _stock_red_reads_amber_strict(found):
        levels = [lvl for (name, lvl) in found if name != "tlp" and lvl != "ex:chr"]
    return EventTLP(max(_BY_LABEL[lvl] for lvl in levels), hide, tuple(found))


_BY_LABEL = {lvl.label: lvl for lvl in Level}
