"""Leak audit: random events x random agreements through the real share path, graded by an
independent oracle.

The path each event takes, in process (the same library functions and bot code the real
processes run, without Redis):

1. the sharing router's decision (``policy_decide.event_facts`` + ``policy_decide.decide`` per agreement, as
   ``intelmq_crossborder/bots/experts/sharing_router/expert.py`` calls them);
2. a redaction expert on the recipient's path (``policy_redact.redact`` with per-recipient random
   extra fields to remove / pseudonymise, as ``intelmq_crossborder/bots/experts/redaction/expert.py``);
3. every output, by running the real bots' ``process()`` with a random configuration per
   recipient up to the point where they would write, and taking what they would write (every
   recipient has the exchange, CSAF and Elasticsearch outputs, about half of them the MISP API
   output and about half the MISP feed):

   - the exchange (bundle) output (random ``max_tlp``): it spools every copy (the real
     ``exchange.Spool``) and seals a signed bundle every ``EXCHANGE_BUNDLE_EVENTS`` events per
     recipient (and the rest at the end); each bundle is opened and verified as the receiving hub
     does (``bundle.open_bundle``, ``verify_data``, ``iter_events``) and the oracle grades the
     events read from it, the manifest fields, and the manifest, signatures and file name for
     hidden values (``bundle_problems``);
   - the CSAF output (random ``max_tlp``): the copy it would spool; for ``CSAF_FULL_RECIPIENTS``
     recipients (a deterministic random choice) the bot runs to the end with one of
     ``CSAF_CONFIGS`` (``group_by``, ``write_every``), writes real advisories into a provider
     directory (the copy gets one of ``CSAF_CVES`` CVEs: the audit's events are no vulnerability
     events), and every advisory written is read back from disk and graded against the events in
     it: ``document.distribution.tlp.label`` never below any of them nor above the output's
     ``max_tlp``, its folder, no hidden value in the JSON or the file name
     (``csaf_document_problems``); at the end every advisory is in the folder of its label only;
   - the MISP API output (random ``distribution``/sharing group, grouping, ``event_info``,
     ``extra_tags``, ``refuse_distributions``, ``publish``): every request body PyMISP would
     send, taken from an in-process stand-in for PyMISP (:class:`_RecordingMISP`); each copy
     creates its event (``run(misp_updates=True)`` instead keeps the events on
     ``tests/fake_misp.FakeMISP``'s endpoint logic, so attributes are added to, and tags
     tightened in, existing events);
   - the MISP feed output: the event file and manifest entry ``FeedWriter.write`` would write;
   - the Elasticsearch output (random ``tlp_ceiling`` and ``default_tlp``): the document it
     would send to ``_bulk``;
   - the TAXII output (about half of the recipients; random ``max_tlp``, recipient profile and
     export kind, drawn from a random stream of its own so that the events stay the same): the
     STIX objects it would push to the recipient's collection, graded on their marking ids, the
     originator's identity and every hidden value (``stix_oracle``).

   Besides, every event goes as it arrived (before any router) to one of three hub data lakes
   (the Elasticsearch output with random ``tlp_ceiling``/``default_tlp``: the hub's own lake
   takes every event), and every ``bypass_every``-th event goes as it arrived to the MISP API
   and feed outputs of every recipient that has them: their agreement check is defence in
   depth and must hold without the router.  Every event of a seed class below also goes as it
   arrived to the exchange and CSAF outputs of one recipient in turn ("solo"): their own reading
   of the labels must hold too.

Besides the standard labels (every spelling, in ``sharing.tlp`` or only in the other label and
tag fields, missing, unknown), the generator plants three seed classes (``truth["seed"]``):
*conflict* (about 12%: ``sharing.tlp`` below a label in ``tlp``, ``extra.tlp``,
``extra.tlp_label``, ``extra.csaf_tlp``, ``extra.misp_tags`` as strings or MISP's
``{"name": ...}``, ``extra.tags`` as one string, a whole-value label or STIX marking id in another
field, a nested MISP tag; ``CONFLICT_PLACES``), *look-alike* (about 7%: a label that cannot be
read beside a readable low one, ``UNREADABLE``; the event must reach nobody) and *hidden source*
(about 5%: ``tlp:ex:chr`` in a tag field or another field, or the flag as a string, with the
originator's feed URL, MISP event URL and MISP UUIDs planted; ``CHR_SHAPES``).  The leaks, the
router decisions against the rules and the refusals of unreadable labels are counted per seed.

The oracle knows the *ground truth* of every event because it generated it: the true TLP
level behind whatever spelling and field was used (the most restrictive label planted, as
docs/tlp.md states the rule; or "unknown"/"missing"), the distinctive value of
every field, the PAP, the source MISP distribution, the hub path.  It re-states the TLP 2.0,
agreement and output rules from the specification and the docs (docs/agreements.md,
docs/bots/misp.md, docs/bots/elasticsearch.md) without calling ``policy``, ``tlp``,
``misp`` or ``elastic``: the system is not graded with its own code.  A *leak* is any copy that
reaches an output although the rules say it must not, or any written data (the copy, the MISP
JSON, the lake document, the bundle, the advisory) that carries a removed/pseudonymised/hidden
value in clear (also inside ``raw``), a TLP label or tag lower than the truth, a missing Chatham
House tag, or a MISP distribution other than the recipient's.

``python tests/leak_audit.py [--events N] [--agreements M] [--seed S] [--bypass-every K]
[--misp-updates] [--no-artifacts] [--workers W]`` prints the counts as JSON (exit 1 on a leak);
``tests/test_leak_audit.py`` runs 100,000 events x 24 agreements and asserts 0 leaks.
"""
from __future__ import annotations

import argparse
import base64
import collections
import functools
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intelmq.lib.exceptions import InvalidValue  # noqa: E402

from intelmq_crossborder.policy import agreements as policy_agreements, decide as policy_decide, redact as policy_redact  # noqa: E402  (the system under audit)
# --- the specification, restated independently -----------------------------------------------
ORDER = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]
RANK = {name: i for i, name in enumerate(ORDER)}
RELATION_CAP = {"same-organisation": "AMBER+STRICT", "constituent": "AMBER", "community": "GREEN"}
PAP_RANK = {"CLEAR": 0, "GREEN": 1, "AMBER": 2, "RED": 3}
#: The fields that name the originator or point at its systems (docs/tlp.md, "A hidden source").
ORIGINATOR = ["provenance.originator", "feed.provider", "feed.name", "feed.code", "feed.url",
              "feed.documentation", "event_description.url", "csaf.publisher", "csaf.document_url",
              "csaf.tracking_id", "misp.event_uuid", "misp.attribute_uuid", "extra.misp_object_uuid"]
STIX2 = {"CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
         "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
         "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
         "AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
         "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"}
#: Every STIX marking-definition id a reader takes as a TLP level: TLP 2.0 (above), TLP 1.0, and
#: OpenCTI's own TLP:AMBER+STRICT (it reads the TLP 1.0 ids for the others).
STIX_TLP_IDS = {**{mid: level for level, mid in STIX2.items()},
                "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "CLEAR",
                "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "GREEN",
                "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "AMBER",
                "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "RED",
                "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37": "AMBER+STRICT"}
#: Spellings of each level in a single-value field (sharing.tlp, tlp, extra.tlp...).
SPELLINGS = {
    "CLEAR": ["CLEAR", "TLP:CLEAR", "tlp:clear", "clear", "WHITE", "TLP:WHITE", "white", " Tlp:Clear ",
              STIX2["CLEAR"]],
    "GREEN": ["GREEN", "TLP:GREEN", "tlp:green", "green", "Green", STIX2["GREEN"]],
    "AMBER": ["AMBER", "TLP:AMBER", "tlp:amber", "amber", "Amber", STIX2["AMBER"]],
    "AMBER+STRICT": ["AMBER+STRICT", "TLP:AMBER+STRICT", "tlp:amber+strict", "amber+strict", "AMBER STRICT",
                     "TLP:AMBER_STRICT", STIX2["AMBER+STRICT"]],
    "RED": ["RED", "TLP:RED", "tlp:red", "red", STIX2["RED"]],
}
UNKNOWN = ["PURPLE", "TLP:PINK", "tlp:", "TLP", "AMBER+", "GREENISH", "TLP:AMBER+LOOSE", "4", "tlp:ambr"]
LABEL_FIELDS_SINGLE = ["tlp", "extra.tlp", "extra.tlp_label", "extra.csaf_tlp"]
TAG_FIELDS = ["extra.misp_tags", "extra.tags"]
TAXONOMY_TYPES = {
    "malicious-code": ["infected-system", "c2-server", "malware-distribution", "malware-configuration"],
    "information-gathering": ["scanner", "sniffing", "social-engineering"],
    "intrusion-attempts": ["ids-alert", "brute-force", "exploit"],
    "intrusions": ["privileged-account-compromise", "system-compromise", "burglary"],
    "vulnerable": ["vulnerable-system", "weak-crypto", "ddos-amplifier"],
    "fraud": ["phishing", "masquerade", "copyright"],
    "other": ["other", "undetermined"],
}
COUNTRIES = ["DE", "FR", "AT", "IT", "NL", "BE", "PL", "ES", "SE", "FI"]
HUBS = ["de-hub", "fr-hub", "at-hub", "it-hub", "nl-hub"]
# Fields with random distinctive values (string-typed, pseudonymisable) and their value makers.
VALUE_FIELDS = {
    "source.fqdn": lambda t: f"{t}.example.net",
    "source.url": lambda t: f"http://{t}.example.org/p",
    "source.account": lambda t: f"user-{t}",
    "source.ip": None,              # filled with a unique IP
    "destination.fqdn": lambda t: f"{t}.example.com",
    "destination.account": lambda t: f"acct-{t}",
    "extra.note": lambda t: f"note {t}",
    "extra.contact": lambda t: f"{t}@example.org",
    "comment": lambda t: f"comment {t}",
    "malware.name": lambda t: f"mal{t}",
    "feed.name": lambda t: f"Feed {t}",
    "feed.provider": lambda t: f"Provider {t}",
    "feed.url": lambda t: f"https://{t}.feeds.example/",
    "event_description.url": lambda t: f"https://misp.{t}.example/events/view/42",
    "provenance.originator": lambda t: f"orig-{t}",
    "csaf.tracking_id": lambda t: f"TID-{t}",
}
#: Source fields planted only in the events whose source a tag hides (seed class "hidden source").
SOURCE_ONLY_FIELDS = {name: (lambda t, name=name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{t}")))
                      for name in ("misp.event_uuid", "misp.attribute_uuid", "extra.misp_object_uuid")}
#: The fields a MISP attribute can be made from (docs/bots/misp.md) that the generator fills; a repeated
#: indicator copies all of them from an earlier event, so both go to the same attribute.
INDICATOR_BLOCK = ["source.url", "source.fqdn", "destination.fqdn", "source.ip", "source.account"]
#: MISP tags of the TLP taxonomy (tlp:white is TLP 1.0's CLEAR); the Chatham House flag is not a level.
MISP_TLP_TAGS = {"tlp:clear": "CLEAR", "tlp:white": "CLEAR", "tlp:green": "GREEN", "tlp:amber": "AMBER",
                 "tlp:amber+strict": "AMBER+STRICT", "tlp:red": "RED"}
CHR_TAG = "tlp:ex:chr"
EVENT_INFOS = ["{feed} {day}", "{key}", "{recipient}: {feed} {incident} {key}", "hub {day}"]
EXTRA_TAGS = ["hub:from-at", 'workflow:state="complete"', 'osint:source-type="block-or-filter-list"']
#: The sharing group the outputs write with distribution 4 (the one tests/fake_misp.FakeMISP knows).
SHARING_GROUP = 7
REMOVABLE = ["source.fqdn", "source.url", "source.account", "source.ip", "destination.fqdn", "destination.account",
             "extra.note", "extra.contact", "extra.*", "comment", "malware.name", "feed.url"]
PSEUDONYMISABLE = ["source.fqdn", "source.account", "source.ip", "destination.account", "extra.note",
                   "extra.contact", "comment", "feed.name"]


def _matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


# --- generators ---------------------------------------------------------------------------------

def random_agreement(rng: random.Random, index: int) -> dict:
    relation = rng.choice(list(RELATION_CAP))
    cap = RANK[RELATION_CAP[relation]]
    max_level = ORDER[rng.randint(0, cap)]
    doc = {"recipient": f"r{index:02d}-{relation[:4]}", "name": f"Random recipient {index}",
           "kind": rng.choice(["national-hub", "csirt", "isac", "critical-infrastructure", "eu-cyclone",
                               "csirts-network"]),
           "country": rng.choice(COUNTRIES + ["EU"]), "relation": relation,
           "max_tlp": rng.choice(SPELLINGS[max_level][:5])}
    if rng.random() < 0.5:
        doc["taxonomies"] = rng.sample(list(TAXONOMY_TYPES), rng.randint(1, 5))
    if rng.random() < 0.4:
        doc["types"] = rng.sample([t for ts in TAXONOMY_TYPES.values() for t in ts], rng.randint(2, 12))
    if rng.random() < 0.5:
        doc["origin_countries"] = rng.sample(COUNTRIES, rng.randint(1, 6))
        doc["unknown_origin"] = rng.choice(["deny", "allow"])
    if rng.random() < 0.7:
        doc["remove_fields"] = rng.sample(REMOVABLE, rng.randint(1, 4))
    if rng.random() < 0.6:
        ps = [f for f in rng.sample(PSEUDONYMISABLE, rng.randint(1, 3))
              if not any(_matches(r, f) for r in doc.get("remove_fields", []))]
        if ps:
            doc["pseudonymise_fields"] = ps
    if rng.random() < 0.5:
        doc["max_pap"] = rng.choice(list(PAP_RANK))
        doc["missing_pap"] = rng.choice(["deny", "allow"])
    doc["disclose_source"] = rng.random() < 0.4
    doc["hide_source"] = rng.choice(["remove", "pseudonymise"])
    if rng.random() < 0.4:
        doc["no_label"] = rng.choice(["deny"] + ORDER[:cap + 1])
    if rng.random() < 0.3:
        doc["hub_id"] = rng.choice(HUBS)
    if rng.random() < 0.1:
        doc["enabled"] = False
    if rng.random() < 0.3:
        doc["retention_days"] = rng.randint(1, 400)
    if rng.random() < 0.2:
        doc["keep_raw"] = True
    return doc


def random_event(rng: random.Random, n: int, recent: Optional[list] = None) -> tuple:
    """(event, truth): truth holds the level ('CLEAR'..'RED', 'unknown' or None) and the clear values.

    ``recent``: earlier events' values; now and then an event repeats one's indicators."""
    token = f"t{n:07d}x{rng.getrandbits(24):06x}"
    taxonomy = rng.choice(list(TAXONOMY_TYPES))
    ev = {"classification.taxonomy": taxonomy, "classification.type": rng.choice(TAXONOMY_TYPES[taxonomy]),
          "time.observation": "2026-11-20T01:02:03+00:00"}
    if rng.random() < 0.1:   # types of another taxonomy, or missing classification
        ev["classification.type"] = rng.choice(TAXONOMY_TYPES[rng.choice(list(TAXONOMY_TYPES))])
    if rng.random() < 0.05:
        del ev["classification.taxonomy"]
    values = {}
    for name, make in VALUE_FIELDS.items():
        if rng.random() < 0.55:
            values[name] = make(token) if make else f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    if recent and rng.random() < 0.1:   # the same indicator seen again (with its own label)
        old = rng.choice(recent)
        for name in INDICATOR_BLOCK:
            if name in old:
                values[name] = old[name]
            else:
                values.pop(name, None)
    if recent is not None:
        recent.append(values)
        del recent[:-5]
    ev.update(values)
    mdist = None
    if rng.random() < 0.3:   # the originator's MISP distribution, as the MISP parser writes it
        mdist = rng.randint(0, 4)
        ev["misp.distribution"] = mdist
    if rng.random() < 0.85:
        ev["provenance.origin_country"] = rng.choice(COUNTRIES)
    if rng.random() < 0.3:
        path = rng.sample(HUBS, rng.randint(1, 3))
        ev["provenance.hub_path"] = ",".join(path)
        ev["provenance.origin_hub"] = path[0]
    pap_truth = None
    r = rng.random()
    if r < 0.5:
        pap_truth = rng.choice(list(PAP_RANK))
        ev["sharing.pap"] = rng.choice([pap_truth, f"PAP:{pap_truth}", pap_truth.lower()])
    elif r < 0.55:
        pap_truth = "unknown"
        ev["sharing.pap"] = rng.choice(["PAP:PURPLE", "BLUE", "pap:"])
    chr_flag = False
    if rng.random() < 0.15:
        ev["sharing.do_not_disclose_source"] = True
        chr_flag = True
    # TLP, by seed class (truth["seed"]): a conflict (sharing.tlp below another label), a label that
    # cannot be read (look-alike, wrong shape), a source hidden by a tag, or the standard labels.
    planted: list = []      # (field, level or "unknown") of every label planted
    bad_field = None
    r = rng.random()
    if r < CONFLICT_SHARE:
        seed = _plant_conflict(rng, ev, planted)
    elif r < CONFLICT_SHARE + LOOKALIKE_SHARE:
        seed, bad_field = _plant_unreadable(rng, ev, planted)
        chr_flag = chr_flag or seed.endswith(("hide flag", "Chatham House tag"))
    elif r < CONFLICT_SHARE + LOOKALIKE_SHARE + HIDDEN_SHARE:
        seed = _plant_hidden_source(rng, ev, planted, values, token)
        chr_flag = True
    else:
        seed = "standard"
        chr_flag = _plant_standard(rng, ev, planted, token) or chr_flag
    level = true_level(planted)
    if seed == "standard" and RANK.get(level, -1) > RANK.get(dict(planted).get("sharing.tlp"), 9):
        seed = "conflict: stale extra.tlp above sharing.tlp"
    if level == "unknown" and bad_field is None:
        bad_field = next(f for f, lv in planted if lv == "unknown")
    if rng.random() < 0.5:
        ev["raw"] = base64.b64encode(json.dumps(values).encode()).decode()
    return ev, {"level": level, "values": values, "pap": pap_truth, "chr": chr_flag, "mdist": mdist,
                "hubs": set(ev.get("provenance.hub_path", "").split(",")) - {""}, "seed": seed,
                "bad_field": bad_field}


def _plant_standard(rng: random.Random, ev: dict, planted: list, token: str) -> bool:
    """A label in sharing.tlp (now and then a stale other one in extra.tlp), or only in the stock /
    extra label and tag fields, or none.  Returns whether a tag hides the source."""
    chr_flag = False
    r = rng.random()
    if r < 0.6:
        level = rng.choice(ORDER + ["unknown"] if rng.random() < 0.1 else ORDER)
        ev["sharing.tlp"] = rng.choice(UNKNOWN) if level == "unknown" else rng.choice(SPELLINGS[level])
        planted.append(("sharing.tlp", level))
        if level == "AMBER+STRICT" and rng.random() < 0.3:     # as the TLP expert writes it
            ev["tlp"] = "RED"
            planted.append(("tlp", "RED"))
        if rng.random() < 0.2:   # a stale, different label elsewhere: the most restrictive counts
            stale = rng.choice(ORDER)
            ev["extra.tlp"] = rng.choice(SPELLINGS[stale][:4])
            planted.append(("extra.tlp", stale))
    elif r < 0.85:
        for name in rng.sample(LABEL_FIELDS_SINGLE + TAG_FIELDS, rng.randint(1, 3)):
            lvl = rng.choice(ORDER + ["unknown"] if rng.random() < 0.08 else ORDER)
            text = rng.choice(UNKNOWN) if lvl == "unknown" else rng.choice(SPELLINGS[lvl][:5])
            if name in TAG_FIELDS:
                tag = ("tlp:" + ("purple" if lvl == "unknown" else lvl.lower()))
                tags = [tag, "osint:source-type=\"blog-post\"", f"misp-galaxy:x=\"{token}\""]
                if rng.random() < 0.2:
                    tags.append("tlp:ex:chr")
                    chr_flag = True
                rng.shuffle(tags)
                ev[name] = ",".join(tags) if name == "extra.tags" and rng.random() < 0.5 else tags
            else:
                if name == "tlp":        # the stock field only has WHITE/GREEN/AMBER/RED
                    if lvl in ("AMBER+STRICT", "unknown"):
                        continue
                    text = {"CLEAR": "WHITE"}.get(lvl, lvl)
                ev[name] = text
            planted.append((name, lvl))
    return chr_flag


#: Shares of the seed classes besides the standard labels.
CONFLICT_SHARE, LOOKALIKE_SHARE, HIDDEN_SHARE = 0.12, 0.07, 0.05
#: Where a conflict puts the label above sharing.tlp.
CONFLICT_PLACES = ["tlp", "extra.tlp", "extra.tlp_label", "extra.csaf_tlp", "extra.misp_tags strings",
                   "extra.misp_tags objects", "extra.tags string", "other field", "nested other field",
                   "STIX id in another field"]
#: A field that is no label field, holding a whole-value label (the reader must read it).
OTHER_FIELD, NESTED_FIELD, MARKING_REFS = "extra.marking", "extra.misp_event", "extra.object_marking_refs"
OSINT_TAG = 'osint:source-type="block-or-filter-list"'


def _plant_conflict(rng: random.Random, ev: dict, planted: list) -> str:
    """sharing.tlp lower than another label of the event (which the truth takes)."""
    place = rng.choice(CONFLICT_PLACES)
    high = rng.choice(["GREEN", "AMBER", "AMBER+STRICT", "RED", "RED"])
    if place == "tlp" and high == "AMBER+STRICT":       # the stock field has no AMBER+STRICT
        high = "RED"
    # a stock RED beside AMBER+STRICT is the TLP expert's export of AMBER+STRICT: not a conflict
    low = rng.choice(ORDER[:min(RANK[high], 3 if place == "tlp" else 4)])
    ev["sharing.tlp"] = rng.choice(SPELLINGS[low])
    planted.append(("sharing.tlp", low))
    tag = "tlp:" + high.lower()
    if rng.random() < 0.2:      # a spelling a careless reader misses: other case, white space, a newline
        tag = rng.choice([tag.upper(), f" {tag}", f"{tag}\n"])
    if place == "tlp":
        ev["tlp"] = rng.choice([high, high.lower(), f"{high}\n"])
    elif place in ("extra.tlp", "extra.tlp_label", "extra.csaf_tlp"):
        ev[place] = rng.choice(SPELLINGS[high][:5]) + rng.choice(["", "", "", "\n", " "])
    elif place == "extra.misp_tags strings":
        ev["extra.misp_tags"] = rng.sample([OSINT_TAG, tag, "tlp:" + low.lower()], 3)
    elif place == "extra.misp_tags objects":
        ev["extra.misp_tags"] = [{"name": OSINT_TAG, "colour": "#004646"}, {"name": tag, "colour": "#CC0033"}]
    elif place == "extra.tags string":
        ev["extra.tags"] = ",".join(rng.sample([OSINT_TAG, tag], 2))
    elif place == "other field":
        ev[OTHER_FIELD] = rng.choice([tag, "TLP:" + high])
    elif place == "nested other field":
        ev[NESTED_FIELD] = {"info": "event", "Tag": [{"name": OSINT_TAG}, {"name": tag}]}
    else:
        ev[MARKING_REFS] = [rng.choice([STIX2[high], STIX2[high].upper()])]
    planted.append((place.split(" ")[0] if place.startswith(("tlp", "extra.")) else place, high))
    return f"conflict: {place}"


#: Labels that cannot be read: (variant, field, value).  Each event of the class carries one, and
#: (but where it is in sharing.tlp itself) a readable low label in sharing.tlp: the event must be
#: refused whole, never read as that label or as unlabelled.
UNREADABLE = [
    ("zero-width space", "extra.tlp", "tlp:\u200bred"),
    ("zero-width space", "sharing.tlp", "TLP:RED\u200b"),
    ("zero-width space", "extra.misp_tags", [OSINT_TAG, "tlp:r\u200bed"]),
    ("Cyrillic letters", "extra.csaf_tlp", "\u0442l\u0440:red"),                 # тlр:red
    ("Cyrillic letters", "extra.misp_tags", [{"name": "tlp:r\u0435d"}]),          # Cyrillic е
    ("Cyrillic letters", "tlp", "R\u0415D"),                                       # Cyrillic Е
    ("Cyrillic letters", OTHER_FIELD, "\u0442l\u0440:amber+strict"),
    ("full-width colon", "extra.tags", OSINT_TAG + ",TLP\uff1aRED"),
    ("full-width colon", "sharing.tlp", "TLP\uff1aRED"),
    ("full-width letters", OTHER_FIELD, "\uff34\uff2c\uff30:\uff32\uff25\uff24"),
    ("list where a string is expected", "extra.tlp", ["RED"]),
    ("list where a string is expected", "sharing.tlp", ["AMBER+STRICT"]),
    ("list where a string is expected", "tlp", ["RED"]),
    ("tag object without name", "extra.misp_tags", [{"name": OSINT_TAG}, {"colour": "#CC0033"}]),
    ("tag object without name", "extra.misp_tags", [{"Name": "tlp:red"}]),
    ("tag object without name", "extra.misp_tags", [{"name": ["tlp:red"]}]),
    ("tags in a mapping", "extra.misp_tags", {"name": "tlp:red"}),
    ("field named TLP", "extra.TLP_level", "RED"),
    ("field named TLP", "extra.tlp_level", "amber+strict"),
    ("field named TLP", NESTED_FIELD, {"info": "event", "tlp": "red"}),
    ("look-alike Chatham House tag", "extra.tags", [OSINT_TAG, "tlp:ex:\u0441hr"]),
    ("unreadable hide flag", "sharing.do_not_disclose_source", "perhaps"),
    ("nesting too deep to read", NESTED_FIELD, functools.reduce(lambda inner, _: {"a": inner}, range(40),
                                                                  {"Tag": [{"name": "tlp:red"}]})),
]


def _plant_unreadable(rng: random.Random, ev: dict, planted: list) -> tuple:
    """One label that cannot be read (truth "unknown"), beside a readable low label."""
    variant, field, value = rng.choice(UNREADABLE)
    low = rng.choice(ORDER[:3])
    if field != "sharing.tlp":
        ev["sharing.tlp"] = rng.choice(SPELLINGS[low])
        planted.append(("sharing.tlp", low))
    ev[field] = json.loads(json.dumps(value))      # a fresh copy: outputs may change what they get
    planted.append((field, "unknown"))
    return f"look-alike: {variant}", field


#: Shapes of the tlp:ex:chr tag (or of the flag) that hides the source.
CHR_SHAPES = ["tlp:ex:chr in extra.tags list", "tlp:ex:chr in extra.tags string", "tlp:ex:chr in extra.tags objects",
              "tlp:ex:chr in extra.misp_tags objects", "tlp:ex:chr as the whole value of another field",
              "flag spelled as a string or 1", "tlp:ex:chr in extra.tags beside the flag false"]


def _plant_hidden_source(rng: random.Random, ev: dict, planted: list, values: dict, token: str) -> str:
    """tlp:ex:chr in a tag field or another field (no sharing.do_not_disclose_source), or the flag
    spelled as a string, with the originator's feed URL, MISP event URL and MISP UUIDs planted:
    none of them may appear in any output."""
    ev.pop("sharing.do_not_disclose_source", None)
    level = rng.choice(ORDER[:4])
    ev["sharing.tlp"] = rng.choice(SPELLINGS[level])
    planted.append(("sharing.tlp", level))
    shape = rng.choice(CHR_SHAPES)
    chr_tag = rng.choice([CHR_TAG, CHR_TAG, CHR_TAG.upper(), f" {CHR_TAG}"])
    if shape.endswith("extra.tags list"):
        ev["extra.tags"] = rng.sample([OSINT_TAG, chr_tag], 2)
    elif shape.endswith("extra.tags string"):
        ev["extra.tags"] = ",".join(rng.sample([OSINT_TAG, chr_tag], 2))
    elif shape.endswith("extra.tags objects"):
        ev["extra.tags"] = [{"name": OSINT_TAG}, {"name": chr_tag}]
    elif shape.endswith("extra.misp_tags objects"):
        ev["extra.misp_tags"] = [{"name": chr_tag, "colour": "#000000"}, {"name": OSINT_TAG}]
    elif shape.endswith("another field"):
        ev[OTHER_FIELD] = chr_tag
    elif shape.endswith("flag false"):        # an upstream "false" never lifts the originator's tag
        ev["extra.tags"] = [chr_tag]
        ev["sharing.do_not_disclose_source"] = rng.choice([False, "false", 0])
    else:
        ev["sharing.do_not_disclose_source"] = rng.choice(["true", "True", "TRUE", "1", "yes", 1])
    for name in ("feed.url", "event_description.url"):
        values[name] = ev[name] = VALUE_FIELDS[name](token)
    for name, make in SOURCE_ONLY_FIELDS.items():
        values[name] = ev[name] = make(token)
    return f"hidden source: {shape}"


def true_level(planted: list) -> Optional[str]:
    """The effective level of what was planted (docs/tlp.md, restated): "unknown" when any label
    cannot be read, else the most restrictive, None for no label.  The one documented exception:
    the stock ``tlp`` RED beside ``sharing.tlp`` AMBER+STRICT and no other RED is the pair the TLP
    expert writes for AMBER+STRICT (the stock field has none)."""
    levels = [lv for _, lv in planted]
    if "unknown" in levels:
        return "unknown"
    if not levels:
        return None
    stock = [lv for f, lv in planted if f == "tlp"]
    shared = [lv for f, lv in planted if f == "sharing.tlp"]
    others = [lv for f, lv in planted if f != "tlp"]
    if stock == ["RED"] and shared == ["AMBER+STRICT"] and "RED" not in others:
        return "AMBER+STRICT"
    return max(levels, key=RANK.get)


def random_outputs(rng: random.Random) -> dict:
    """One recipient's outputs and their configuration.  Every recipient has the exchange, CSAF and
    Elasticsearch outputs; the MISP API output and the MISP feed each for about half of them (as
    a hub would set them up; a MISP copy costs about ten times an exchange copy)."""
    def misp_common():
        return {"grouping": rng.choice(["feed_day", "incident"]), "event_info": rng.choice(EVENT_INFOS),
                "extra_tags": rng.sample(EXTRA_TAGS, rng.randint(0, 2)),
                "refuse": rng.choice([[0], [0], [0, 1], []])}
    misp = misp_common()
    misp.update(distribution=rng.randint(0, 4), publish=rng.random() < 0.5)
    out = {"exchange": rng.choice(ORDER[:3]), "csaf": rng.choice(ORDER), "misp": misp,
           "misp_feed": misp_common(), "elasticsearch": random_lake(rng)}
    out["has"] = {"exchange", "csaf", "elasticsearch"} | {name for name in ("misp", "misp_feed") if rng.random() < 0.5}
    return out


def random_taxii(rng: random.Random) -> dict:
    """A TAXII output's parameters (max_tlp spelled as in a configuration)."""
    level = rng.choice(ORDER[:3])
    return {"max": level, "max_tlp": rng.choice(SPELLINGS[level][:5]),
            "profile": rng.choice(["oasis", "opencti", "both"]), "kind": rng.choice(["indicator", "observed-data"])}


def random_lake(rng: random.Random) -> dict:
    """An Elasticsearch output's TLP parameters, as spelled in a configuration."""
    ceiling, default = rng.choice(ORDER), rng.choice(ORDER)
    return {"ceiling": ceiling, "tlp_ceiling": rng.choice(SPELLINGS[ceiling][:5]),
            "default": default, "default_tlp": rng.choice(SPELLINGS[default][:5])}


# --- the real outputs, run up to the point where they write -------------------------------------

class _Passed(Exception):
    """The output's guard let the event through (it would now be written); args[0]: what."""


class _RaiseOnUse:
    def __enter__(self):
        raise _Passed()

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        raise _Passed()

    def __getattr__(self, name):
        raise _Passed()


class _FlatEvent(dict):
    def to_dict(self, hierarchical=False):
        return dict(self)


_QUIET = logging.getLogger("leak-audit")
_QUIET.disabled = True


def _wire(obj) -> str:
    """A request body as PyMISP's ``_prepare_request`` serialises it."""
    from pymisp.abstract import pymisp_json_default
    return json.dumps(obj, default=pymisp_json_default)


class _RecordingMISP:
    """The PyMISP methods the MISP output calls, in process: each request body is recorded as
    ``(path, body, text)`` exactly as PyMISP would send it.  Without ``server`` the peer's MISP
    is empty (every event lookup answers 404, every write succeeds); with ``server`` (a
    ``tests/fake_misp.FakeMISP``) its endpoint logic answers, so events persist between calls."""

    def __init__(self, server=None):
        self.server = server
        self.sent = []

    def _request(self, method, path, obj=None):
        text = None if obj is None else _wire(obj)
        body = None if text is None else json.loads(text)
        self.sent.append((path, body, text))
        if self.server is None:
            return body if body is not None else {"message": "ok"}
        status, answer = self.server.handle(method, path, body)
        return {"errors": (status, answer)} if status >= 400 else answer

    def get_event(self, event_id, pythonify=False):
        if self.server is None:
            return {"errors": (404, {"name": "Invalid event", "message": "Invalid event"})}
        status, answer = self.server.handle("GET", f"/events/view/{event_id}", None)
        if status >= 400:
            return {"errors": (status, answer)}
        from pymisp import MISPEvent
        event = MISPEvent()
        event.load(answer)
        return event

    def add_event(self, event, pythonify=False):
        answer = self._request("POST", "/events/add", event)
        return answer if "errors" in answer else event

    def add_attribute(self, event_id, attribute, pythonify=False):
        return self._request("POST", f"/attributes/add/{event_id}", attribute)

    def update_attribute(self, attribute, attribute_id=None, pythonify=False):
        return self._request("POST", f"/attributes/edit/{attribute_id}", attribute)

    def update_event(self, event, event_id=None, pythonify=False, metadata=False):
        return self._request("POST", f"/events/edit/{event_id}" + ("/metadata:1" if metadata else ""), event)

    def publish(self, event_id, alert=False):
        return self._request("POST", f"/events/publish/{event_id}")

    def add_sighting(self, sighting, attribute=None):
        return self._request("POST", f"/sightings/add/{attribute}", sighting)


class _Guard:
    """One output: ``guard(event, config, agreement, key) -> (written?, reason, sent)``, where
    ``sent`` is what it would write (None: the copy it was given, as it is)."""

    def __init__(self, cls, setup, configure, finish=None, message=None):
        # A bare instance: no IntelMQ set-up (no Redis, no config); __del__ would "stop" it noisily.
        self.bot = bot = object.__new__(type(cls.__name__, (cls,), {"__del__": lambda self: None}))
        bot.logger = _QUIET
        bot.acknowledge_message = lambda: self.acked.append(True)
        self.acked = []
        setup(bot)
        self.configure, self.finish = configure, finish
        self.message = message or _FlatEvent

    def __call__(self, event: dict, config, agreement, key) -> tuple:
        bot = self.bot
        message = self.message(event)
        bot.receive_message = lambda: message
        self.acked.clear()
        self.configure(bot, config, agreement, key)
        try:
            bot.process()
        except _Passed as passed:
            return True, "written", passed.args[0] if passed.args else None
        except InvalidValue as exc:
            return False, "dumped: " + str(exc)[:300], None
        except Exception as exc:            # the bot would log it, retry and dump: not written
            return False, f"error: {type(exc).__name__}", None
        if self.finish is not None:
            return self.finish(bot, self.acked)
        return False, "returned without writing", None


def output_guards(misp_server=None, artifacts: Optional["_Artifacts"] = None) -> dict:
    """name -> _Guard running the real bot's process() up to the point where it would write;
    ``misp_server``: a FakeMISP that keeps the MISP output's events (else each copy makes one);
    ``artifacts``: the exchange and CSAF outputs write there (see :class:`_Artifacts`)."""

    from intelmq_crossborder.formats.misp import push as misp_push
    from intelmq_crossborder.core import tlp as _tlp
    from intelmq_crossborder.bots.outputs.csaf.output import CrossBorderCSAFOutputBot
    from intelmq_crossborder.bots.outputs.elasticsearch.output import CrossBorderElasticsearchOutputBot
    from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
    from intelmq_crossborder.bots.outputs.misp.output import CrossBorderMISPOutputBot
    from intelmq_crossborder.exchange.seal import SealSchedule
    from intelmq_crossborder.bots.outputs.misp_feed.output import CrossBorderMISPFeedOutputBot
    from intelmq_crossborder.formats.csaf.spool import AdvisorySpool

    # exchange and CSAF: the guard is max_tlp; what passes is spooled as it is.  With
    # ``artifacts`` the exchange output spools and seals real bundles (every recipient) and the
    # CSAF output writes real advisories (the recipients in ``artifacts.csaf_full``)
    def exchange_setup(bot):
        bot.recipient = "audit"
        bot._lock = _RaiseOnUse() if artifacts is None else threading.Lock()
        bot._redelivery = bot._pusher = bot._timer = None
        bot._schedule, bot.seal_empty = SealSchedule(EXCHANGE_BUNDLE_EVENTS, 0), False

    def exchange_configure(bot, label, agreement, key):
        max_tlp(bot, label, agreement, key)
        if artifacts is not None:
            bot.recipient, bot._spool = agreement.recipient, artifacts.spool(agreement.recipient)

    def exchange_finish(bot, acked):
        if not acked:
            return False, "returned without writing", None
        return True, "written", bot._spool

    # the spool of a recipient without advisories: its guard passes the event at grouping
    guard_spool = AdvisorySpool("", None, AUDIT_PUBLISHER, max_level=_tlp.Level.CLEAR,
                                group_by=_RaiseOnUse(), fallback_group_by=[])

    def csaf_setup(bot):
        bot._spool = guard_spool

    def csaf_configure(bot, label, agreement, key):
        state = artifacts.csaf(agreement.recipient) if artifacts is not None else None
        bot._spool = guard_spool if state is None else state.spool
        bot._spool.max_level = _tlp.Level.from_label(label)

    def csaf_finish(bot, acked):
        if not acked:
            return False, "returned without writing", None
        return True, "written", None

    def max_tlp(bot, label, agreement, key):
        bot._max_level = bot._max = _tlp.Level.from_label(label)

    # MISP API output: its guard is the agreement again and refuse_distributions; what passes
    # becomes PyMISP requests (init() and Pusher.api set up what is set here)
    api = _RecordingMISP(misp_server)
    settings_of: dict = {}

    def misp_setup(bot):
        bot.misp_url = "https://misp.peer.example/"
        bot._pusher = misp_push.Pusher(lambda: api, None, misp_push.RetryingCaller(0, 0.0, None),
                                       sighting_source="audit", cache_size=256)
        bot._pusher._api = api          # connected, the sharing group resolved (SHARING_GROUP)

    def misp_configure(bot, cfg, agreement, key):
        bot.agreement, bot._hmac_key, bot.refuse_distributions = agreement, key, cfg["refuse"]
        bot._pusher.publish = cfg["publish"]
        if agreement.recipient not in settings_of:
            settings = misp_push.PushSettings(
                recipient=agreement.recipient, grouping=cfg["grouping"], incident_field="extra.incident_id",
                event_info=cfg["event_info"], distribution=cfg["distribution"], extra_tags=cfg["extra_tags"])
            if cfg["distribution"] == 4:
                settings.sharing_group_id = SHARING_GROUP
            settings_of[agreement.recipient] = settings
        bot._pusher.settings = settings_of[agreement.recipient]
        if misp_server is None:
            bot._pusher.cache.clear()
        api.sent = []

    def misp_finish(bot, acked):
        if not acked:
            return False, "returned without writing", None
        return True, "written" if api.sent else "unchanged", list(api.sent)

    # MISP feed output: the same guard; what passes is written by FeedWriter.write
    feed_files: list = []

    class _AuditFeed(misp_push.FeedWriter):
        def __init__(self):      # no directory: the files are kept in memory
            self.org = {"name": "audit hub", "uuid": "00000000-0000-4000-8000-00000000a0d1"}
            self.manifest, self.hashes = {}, {}

        def load(self, event_uuid):
            return None

        def _write(self, name, text):
            feed_files.append((name, json.loads(text) if name.endswith(".json") else None, text))

    feed_settings: dict = {}

    def feed_setup(bot):
        bot._feed = _AuditFeed()
        bot._written = 0

    def feed_configure(bot, cfg, agreement, key):
        bot.agreement, bot._hmac_key, bot.refuse_distributions = agreement, key, cfg["refuse"]
        if agreement.recipient not in feed_settings:
            feed_settings[agreement.recipient] = misp_push.PushSettings(
                recipient=agreement.recipient, grouping=cfg["grouping"], incident_field="extra.incident_id",
                event_info=cfg["event_info"], org_name=bot._feed.org["name"], org_uuid=bot._feed.org["uuid"],
                extra_tags=cfg["extra_tags"])
        bot._settings = feed_settings[agreement.recipient]
        bot._feed.manifest, bot._feed.hashes = {}, {}
        feed_files.clear()

    def feed_finish(bot, acked):
        if not acked or not feed_files:
            return False, "returned without writing", None
        return True, "written", [f for f in feed_files if f[0] != "hashes.csv"]

    # Elasticsearch output: its guard is tlp_ceiling (default_tlp for no label); what passes is
    # the document handed to _send_batch (bulk_size 1: indexed at once)
    def es_setup(bot):
        bot.bulk_size, bot.index_prefix, bot.rotation, bot.default_retention_days = 1, "lake", "daily", None
        bot.drop_fields, bot.id_fields = ["raw"], ["provenance.fingerprint", "provenance.event_uuid"]
        bot.filtered, bot._buffer, bot._buffer_since = 0, [], None
        bot.send_message = lambda *args, **kwargs: None       # the "above_ceiling" path: not this lake

        def send_batch(batch, dump):
            raise _Passed([d.action() for d in batch])
        bot._send_batch = send_batch

    def es_configure(bot, cfg, agreement, key):
        # as init() reads the parameters
        bot._ceiling = _tlp.parse_level(cfg["tlp_ceiling"], "parameter tlp_ceiling")
        bot._default_level = _tlp.parse_level(cfg["default_tlp"], "parameter default_tlp")

    # TAXII output: its guard is export.admit (max_tlp); what passes is the item it would batch
    # (the STIX objects and the identities they reference), with bulk size 1 pushed at once
    from intelmq_crossborder.bots.outputs.taxii.output import CrossBorderTAXIIOutputBot
    from intelmq_crossborder.formats.stix import export as stix_export

    class _TAXIIBatch:
        def ready(self):
            return False

        def add(self, item, raw, acknowledge):
            raise _Passed(item.support + item.objects)

    def taxii_setup(bot):
        bot._batch, bot.collection = _TAXIIBatch(), "audit"

    def taxii_configure(bot, cfg, agreement, key):
        # as init() reads the parameters
        bot._settings = stix_export.ExportSettings("audit-hub", kind=cfg["kind"], profile=cfg["profile"],
                                                   max_tlp=_tlp.parse_level(cfg["max_tlp"], "parameter max_tlp"))
        bot.recipient_profile = cfg["profile"]

    return {"exchange": _Guard(CrossBorderExchangeOutputBot, exchange_setup, exchange_configure, exchange_finish),
            "taxii": _Guard(CrossBorderTAXIIOutputBot, taxii_setup, taxii_configure),
            "csaf": _Guard(CrossBorderCSAFOutputBot, csaf_setup, csaf_configure, csaf_finish),
            "misp": _Guard(CrossBorderMISPOutputBot, misp_setup, misp_configure, misp_finish),
            "misp_feed": _Guard(CrossBorderMISPFeedOutputBot, feed_setup, feed_configure, feed_finish),
            "elasticsearch": _Guard(CrossBorderElasticsearchOutputBot, es_setup, es_configure)}


class _ExpertEvent(dict):
    """An event as an expert changes it (``add``), flat."""

    def add(self, key, value, overwrite=False, **kwargs):
        if key in self and not overwrite:
            raise KeyError(key)
        self[key] = value

    def to_dict(self, hierarchical=False):
        return dict(self)


def solo_guards() -> dict:
    """The exchange and CSAF outputs fed an event as it arrived, without the router: their own
    reading of the labels must hold (max_tlp, RED and AMBER+STRICT, a label they cannot read, a
    source hidden by a tag).  The exchange output's guard gives the line it would spool.  And
    the cross-border TLP expert (``tlp expert``, configured with a ``default_tlp``): the event it
    would send on."""
    from intelmq_crossborder.core import tlp as _tlp
    from intelmq_crossborder.bots.experts.tlp.expert import CrossBorderTLPExpertBot
    from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot

    class _Spool:
        def append(self, line):
            raise _Passed(json.loads(line))

    def exchange_setup(bot):
        bot.recipient, bot._lock, bot._spool = "audit", threading.Lock(), _Spool()
        bot._redelivery = bot._pusher = bot._timer = None

    def exchange_configure(bot, label, agreement, key):
        bot._max_level = bot._max = _tlp.Level.from_label(label)

    class _Sender:
        def send_and_acknowledge(self, items):
            (_, raw), = items
            raise _Passed(json.loads(raw))

    class _Reader:                       # fanout.EventReader: the message the guard hands the bot
        def __init__(self, bot):
            self.bot = bot

        def receive(self):
            return self.bot.receive_message()

        def harmonize(self, fields, received=None):
            pass

    def expert_setup(bot):
        bot.set_stock_tlp, bot._defaulted, bot._sender = True, 0, _Sender()
        bot._reader = _Reader(bot)

    def expert_configure(bot, default, agreement, key):
        bot._default_level = _tlp.Level.from_label(default)

    return {"exchange": _Guard(CrossBorderExchangeOutputBot, exchange_setup, exchange_configure),
            "csaf": output_guards()["csaf"],
            "tlp expert": _Guard(CrossBorderTLPExpertBot, expert_setup, expert_configure, message=_ExpertEvent)}


_SOLO_AGREEMENT, _NO_REDACTION = {"disclose_source": True}, {"remove": [], "pseudonymise": []}


#: The stock ``tlp`` values and the level each stands for.
STOCK = {"WHITE": "CLEAR", "GREEN": "GREEN", "AMBER": "AMBER", "RED": "RED"}


def expert_oracle(truth: dict, default: str, written: bool, sent) -> list:
    """Problems with the event the TLP expert would send on (``default``: its default_tlp)."""
    level = truth["level"]
    if level == "unknown":
        return ["unreadable TLP label forwarded"] if written else []
    if not written:
        return ["readable event not forwarded"]
    level = default if level is None else level
    problems = []
    got = sent.get("sharing.tlp")
    if got not in RANK or RANK[got] < RANK[level]:
        problems.append(f"sharing.tlp {got!r} written for TLP:{level}")
    stock = STOCK.get(sent.get("tlp"))
    if stock is None or RANK[stock] < RANK[level]:
        problems.append(f"stock tlp {sent.get('tlp')!r} written for TLP:{level}")
    if truth["chr"] and sent.get("sharing.do_not_disclose_source") is not True:
        problems.append("hidden source not flagged")
    return problems


def solo_oracle(output: str, truth: dict, out_max: str, written: bool, sent) -> list:
    """Problems with an output fed an event without the router: ``sent`` the copy it would spool
    (exchange) or None."""
    level = truth["level"]
    if level == "unknown":
        return ["unreadable TLP label written"] if written else []
    if not written or level is None:
        return []
    problems = []
    if RANK[level] > RANK[out_max]:
        problems.append(f"TLP:{level} above the output's max_tlp {out_max}")
    if output == "exchange" and level in ("RED", "AMBER+STRICT"):
        problems.append(f"TLP:{level} bundled")
    if isinstance(sent, dict):
        got = sent.get("sharing.tlp")
        if got not in RANK or RANK[got] < RANK[level]:
            problems.append(f"label downgraded: {got!r} for TLP:{level}")
        problems += clear_values(_with_raw(json.dumps(sent, ensure_ascii=False), sent.get("raw")), truth,
                                 _SOLO_AGREEMENT, _NO_REDACTION)
    return problems


#: Events per exchange bundle in the audit (the bot seals at max_bundle_events).
EXCHANGE_BUNDLE_EVENTS = 2000
#: Recipients whose CSAF output writes real advisories (the others are graded on the copy).
CSAF_FULL_RECIPIENTS = 2
#: The audit's events are no vulnerability events: each CSAF copy gets one of these CVEs (from
#: the event number), so the output groups it and writes it (documents mix events and levels).
CSAF_CVES = 37
#: The full CSAF recipients' group_by and write_every, in turn: few large documents written once at
#: the end, and one per CVE rewritten every 3 events (so a group's TLP rises between versions).
CSAF_CONFIGS = [(["classification.taxonomy"], 10 ** 9), (["product.vulnerabilities"], 3)]
AUDIT_HUB = "audit-hub"
#: The publisher of the audit's CSAF advisories.
AUDIT_PUBLISHER = {"category": "coordinator", "name": "audit hub", "namespace": "https://hub.example"}


class _LastKey(dict):
    """The bot's count of unwritten events per tracking id; remembers the group last counted."""
    last = None

    def __setitem__(self, key, value):
        self.last = key
        super().__setitem__(key, value)


class _CSAFState:
    """One recipient's CSAF output: its configuration, spool, provider directory and groups."""

    def __init__(self, root: Path, recipient: str, index: int):
        from intelmq_crossborder.formats.csaf import provider as csaf_output
        written = self.written = []

        class _Directory(csaf_output.ProviderDirectory):
            def write(self, document):
                path = super().write(document)
                written.append(path)
                return path

        from intelmq_crossborder.core import tlp as _tlp
        from intelmq_crossborder.formats.csaf.spool import AdvisorySpool

        self.group_by, self.write_every = CSAF_CONFIGS[index % len(CSAF_CONFIGS)]
        self.fallback = ["product.vulnerabilities"]
        self.root = root / "csaf" / recipient
        self.state_dir = str(self.root / "spool")
        os.makedirs(self.state_dir)
        self.directory = _Directory(str(self.root / "provider"))
        self.spool = AdvisorySpool(self.state_dir, self.directory, AUDIT_PUBLISHER, max_level=_tlp.Level.CLEAR,
                                   group_by=self.group_by, fallback_group_by=self.fallback,
                                   write_every=self.write_every)
        self.pending = self.spool.pending = _LastKey()
        #: tracking id -> [(original, truth, agreement, redaction, level)] of the events spooled
        self.groups: dict = collections.defaultdict(list)


class _Artifacts:
    """Where the exchange and CSAF outputs write in the audit: a temporary folder (tmpfs when
    there is one), one signing key and the trust store of a receiving hub that knows it."""

    def __init__(self, seed: int, recipients: list):
        from intelmq_crossborder.formats import bundle
        shm = "/dev/shm"
        self.root = Path(tempfile.mkdtemp(prefix="leak-audit-", dir=shm if os.path.isdir(shm) else None))
        self.key = bundle.generate_private_key()
        self.trust = bundle.TrustStore.from_dict({"version": 1, "peers": {AUDIT_HUB: {
            "keys": [{"algorithm": "ed25519", "public_key": bundle.public_key_b64(self.key)}]}}})
        self.spools: dict = {}
        #: recipient -> [(original, truth, agreement, redaction, out_max)] spooled, not yet sealed
        self.pending: dict = collections.defaultdict(list)
        self.csaf_full = set(random.Random(f"{seed}-csaf").sample(sorted(recipients),
                                                                   min(CSAF_FULL_RECIPIENTS, len(recipients))))
        self._csaf: dict = {}

    def spool(self, recipient: str):
        spool = self.spools.get(recipient)
        if spool is None:
            from intelmq_crossborder.exchange import spool as exchange
            spool = self.spools[recipient] = exchange.Spool(
                self.root / "exchange" / recipient, self.root / "outbox" / recipient, AUDIT_HUB, recipient,
                self.key, compresslevel=1, logger=_QUIET)
        return spool

    def csaf(self, recipient: str) -> Optional[_CSAFState]:
        if recipient not in self.csaf_full:
            return None
        if recipient not in self._csaf:
            self._csaf[recipient] = _CSAFState(self.root, recipient, sorted(self.csaf_full).index(recipient))
        return self._csaf[recipient]

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


MANIFEST_KEYS = {"format", "format_version", "bundle_id", "sender", "recipient", "sequence", "created", "window",
                 "event_count", "data", "signature"}


def bundle_problems(path: Path, trust, recipient: str, pending: list, note=None) -> tuple:
    """Open and verify one sealed bundle as the receiving hub does; grade what it holds.

    ``pending``: [(original, truth, agreement, redaction, out_max)] of the events spooled into it,
    in order; ``note(truth, output, problems)`` is told each event's problems.  Returns (problems,
    number of events graded from the bundle)."""
    import tarfile

    from intelmq_crossborder.formats import bundle
    problems = []
    try:
        with bundle.open_bundle(path, trust, recipient) as opened:
            opened.verify_data()
            events = [event for _, event in bundle.iter_events(opened)]
    except bundle.BundleError as exc:
        return [f"bundle does not verify: {exc.reason}"], 0
    # the manifest and signatures as the bytes in the container (not as the library reads them)
    with tarfile.open(str(path), mode="r:") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    if set(members) != {"manifest.json", "signatures.json", "data.jsonl.gz"}:
        problems.append(f"bundle members {sorted(members)}")
    manifest = json.loads(members.get("manifest.json", b"{}"))
    if set(manifest) != MANIFEST_KEYS:
        problems.append(f"manifest fields {sorted(set(manifest) ^ MANIFEST_KEYS)}")
    if manifest.get("sender") != AUDIT_HUB or manifest.get("recipient") != recipient:
        problems.append(f"manifest addressed {manifest.get('sender')!r} -> {manifest.get('recipient')!r}")
    if manifest.get("event_count") != len(pending) or len(events) != len(pending):
        problems.append(f"bundle holds {len(events)} events (manifest {manifest.get('event_count')}), "
                        f"{len(pending)} spooled")
    metadata = path.name + "".join(v.decode("utf-8", "replace") for k, v in members.items()
                                   if k != "data.jsonl.gz")
    for (original, truth, agreement, redaction, out_max), event in zip(pending, events):
        found = oracle(original, truth, agreement, redaction, out_max, event)
        found += [f"manifest: {p}" for p in clear_values(metadata, truth, agreement, redaction)]
        if note is not None:
            note(truth, "exchange", found)
        problems += found
    return problems, min(len(events), len(pending))


#: CSAF 2.0 TLP labels (TLP 1.0 words; AMBER+STRICT has none and is written as RED).
CSAF_LABELS = {"WHITE": "CLEAR", "GREEN": "GREEN", "AMBER": "AMBER", "RED": "RED"}


def csaf_document_problems(path: str, root: str, groups: dict, out_max: str, note=None) -> tuple:
    """One CSAF advisory as written to disk, against the events in it: ``groups``: tracking id ->
    [(original, truth, agreement, redaction, level)] spooled; ``note(truth, output, problems)`` is
    told each event's problems.  (problems, events graded)."""
    problems = []
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    document = json.loads(text)
    members = groups.get(document.get("document", {}).get("tracking", {}).get("id"), [])
    if not members:
        problems.append("document of no spooled group")
    label = document.get("document", {}).get("distribution", {}).get("tlp", {}).get("label")
    published = CSAF_LABELS.get(label)
    rel = os.path.relpath(path, root)
    if published is None:
        return problems + [f"document TLP label {label!r}"], len(members)
    if rel.split(os.sep)[0] != label.lower():
        problems.append(f"document labelled {label} published in folder {rel.split(os.sep)[0]!r}")
    if RANK[published] > RANK[out_max] and not (published == "RED" and out_max == "AMBER+STRICT"):
        problems.append(f"document published as TLP:{label} above the output's max_tlp {out_max}")
    for _original, truth, agreement, redaction, level in members:
        found = []
        if RANK[published] < RANK[level]:
            found.append(f"document TLP label {label} below TLP:{level} of an event in it")
        found += [f"document: {p}" for p in clear_values(text, truth, agreement, redaction)]
        lower = {"values": {k: v.lower() for k, v in truth["values"].items()}, "chr": truth["chr"]}
        found += [f"file name: {p}" for p in clear_values(rel.lower(), lower, agreement, redaction)]
        if note is not None:
            note(truth, "csaf", found)
        problems += found
    return problems, len(members)


def csaf_publication_problems(root: str) -> list:
    """The provider directory at the end: every advisory only in the folder of its label."""
    problems, seen = [], {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".json"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                label = json.load(fh)["document"]["distribution"]["tlp"]["label"]
            rel = os.path.relpath(os.path.join(folder, name), root).split(os.sep)
            if rel[0] != label.lower():
                problems.append(f"document labelled {label} left in folder {rel[0]!r}")
            seen.setdefault("/".join(rel[1:]), []).append(rel[0])
    problems += [f"document published in {len(f)} TLP folders" for f in seen.values() if len(f) > 1]
    return problems


# --- the oracle ---------------------------------------------------------------------------------

def rule_problems(original: dict, truth: dict, agreement: dict, out_max: str = "RED") -> tuple:
    """(problems with the event reaching this recipient at all, its effective level or None)."""
    problems = []
    level = truth["level"]
    if level == "unknown":
        return ["unreadable TLP label delivered"], None
    if level is None:
        rule = agreement.get("no_label", "deny")
        if rule == "deny":
            return ["unlabelled event delivered although no_label is deny"], None
        level = rule if rule in RANK else "unknown"
        if level == "unknown":
            return ["no_label spelled oddly"], None
    if level == "RED":
        problems.append("TLP:RED delivered")
    if level == "AMBER+STRICT" and agreement["relation"] != "same-organisation":
        problems.append("AMBER+STRICT outside the organisation")
    if RANK[level] > RANK[RELATION_CAP[agreement["relation"]]]:
        problems.append(f"TLP:{level} above the relation cap")
    max_tlp = next(lvl for lvl, sp in SPELLINGS.items() if agreement["max_tlp"] in sp)
    if RANK[level] > RANK[max_tlp]:
        problems.append(f"TLP:{level} above max_tlp {max_tlp}")
    if RANK[level] > RANK[out_max]:
        problems.append(f"TLP:{level} above the output's max_tlp {out_max}")
    if "taxonomies" in agreement and original.get("classification.taxonomy") not in agreement["taxonomies"]:
        problems.append("taxonomy not allowed")
    if "types" in agreement and original.get("classification.type") not in agreement["types"]:
        problems.append("type not allowed")
    if "origin_countries" in agreement:
        country = original.get("provenance.origin_country")
        if country is None and agreement.get("unknown_origin", "deny") != "allow":
            problems.append("unknown origin delivered")
        if country is not None and country not in agreement["origin_countries"]:
            problems.append("origin country not allowed")
    if "max_pap" in agreement:
        pap = truth["pap"]
        if pap == "unknown":
            problems.append("unreadable PAP delivered")
        elif pap is None and agreement.get("missing_pap", "allow") == "deny":
            problems.append("missing PAP delivered")
        elif pap is not None and PAP_RANK[pap] > PAP_RANK[agreement["max_pap"]]:
            problems.append("PAP above max_pap")
    if agreement.get("hub_id") and (agreement["hub_id"] in truth["hubs"]):
        problems.append("sent back to a hub it passed through")
    if agreement.get("enabled") is False:
        problems.append("disabled agreement delivered")
    return problems, level


_HIDDEN: dict = {}


def clear_values(text: str, truth: dict, agreement: dict, redaction: dict) -> list:
    """The fields whose value must not be in ``text`` (removed, pseudonymised, or the originator
    where the source is not disclosed) but is."""
    cache_key = (id(agreement), id(redaction), truth["chr"])
    hidden = _HIDDEN.get(cache_key)
    if hidden is None:
        patterns = set(agreement.get("remove_fields", [])) | set(agreement.get("pseudonymise_fields", [])) | \
            set(redaction["remove"]) | set(redaction["pseudonymise"])
        if not agreement.get("disclose_source", False) or truth["chr"]:
            patterns |= set(ORIGINATOR)
        hidden = _HIDDEN[cache_key] = (frozenset(name for name in [*VALUE_FIELDS, *SOURCE_ONLY_FIELDS]
                                                 if any(_matches(p, name) for p in patterns)), agreement, redaction)
    names = hidden[0]
    return [f"{name} in clear" for name, value in truth["values"].items() if name in names and value in text]


def _with_raw(text: str, raw) -> str:
    if raw:
        try:
            text += base64.b64decode(raw).decode("utf-8", "replace")
        except ValueError:
            pass
    return text


def oracle(original: dict, truth: dict, agreement: dict, redaction: dict, out_max: str, copy: dict) -> list:
    """Problems with ``copy`` (spooled as it is) reaching an output; [] when the rules allow it."""
    problems, level = rule_problems(original, truth, agreement, out_max)
    if level is None:
        return problems
    got = copy.get("sharing.tlp")
    if got not in RANK or RANK[got] < RANK[level]:
        problems.append(f"label downgraded: {got!r} for TLP:{level}")
    problems += clear_values(_with_raw(json.dumps(copy, ensure_ascii=False), copy.get("raw")),
                             truth, agreement, redaction)
    if "retention_days" in agreement and copy.get("sharing.retention_days") != agreement["retention_days"]:
        problems.append("retention not carried")
    return problems


def _tag_problems(where: str, tags, level: str, chr_flag: bool) -> list:
    names = [t.get("name", "") if isinstance(t, dict) else str(t) for t in tags or []]
    tlp_tags = [n.lower() for n in names if n.lower().startswith("tlp:") and n.lower() != CHR_TAG]
    problems = [f"{where}: unknown TLP tag {n!r}" for n in tlp_tags if n not in MISP_TLP_TAGS]
    levels = [MISP_TLP_TAGS[n] for n in tlp_tags if n in MISP_TLP_TAGS]
    if not levels:
        problems.append(f"{where} without TLP tag")
    elif min(RANK[lv] for lv in levels) < RANK[level]:   # a reader may take any of them
        problems.append(f"{where} TLP tag below TLP:{level}")
    if chr_flag and CHR_TAG not in names:
        problems.append(f"{where} without {CHR_TAG}")
    return problems


def misp_oracle(original: dict, truth: dict, agreement: dict, redaction: dict, cfg: dict, sent: list,
                api: bool) -> list:
    """Problems with what the MISP API output (``api``) or the MISP feed output would write:
    ``sent`` is [(path or file name, JSON body, text)]."""
    problems, level = rule_problems(original, truth, agreement)
    if truth["mdist"] is not None and truth["mdist"] in cfg["refuse"]:
        problems.append(f"source MISP distribution {truth['mdist']} pushed")
    if level is None:
        return problems
    for where, body, text in sent or []:
        problems += clear_values(where + (text or ""), truth, agreement, redaction)   # the URL too
        if body is None or where.startswith(("/events/publish/", "/sightings/")):
            continue
        if where == "manifest.json":
            for entry in body.values():
                problems += _tag_problems("manifest entry", entry.get("Tag"), level, truth["chr"])
            continue
        event = body.get("Event", body)
        if where.startswith("/attributes/"):
            attributes = [event]
        else:
            attributes = event.get("Attribute", [])
            problems += _tag_problems("event", event.get("Tag"), level, truth["chr"])
        for attribute in attributes:
            problems += _tag_problems("attribute", attribute.get("Tag"), level, truth["chr"])
            if api and str(attribute.get("distribution", "5")) != "5":
                problems.append("attribute distribution other than the event's")
        if api and not where.startswith("/attributes/"):
            if str(event.get("distribution")) != str(cfg["distribution"]):
                problems.append(f"MISP distribution {event.get('distribution')!r}, not the recipient's "
                                f"{cfg['distribution']}")
            group = event.get("sharing_group_id")
            if cfg["distribution"] == 4 and str(group) != str(SHARING_GROUP):
                problems.append(f"sharing group {group!r} instead of {SHARING_GROUP}")
            if cfg["distribution"] != 4 and group not in (None, "", "0", 0):
                problems.append(f"sharing group {group!r} without distribution 4")
    return problems


def lake_oracle(truth: dict, lake: dict, written: bool, actions) -> tuple:
    """The hub's own lake (no agreement): (leaks, over-blocking) for one event as it arrived."""
    level = truth["level"]
    if level == "unknown":
        return (["unreadable TLP label indexed"] if written else []), []
    effective = lake["default"] if level is None else level
    if not written:
        return [], ([] if RANK[effective] > RANK[lake["ceiling"]] else
                    [f"TLP:{effective} withheld below the ceiling {lake['ceiling']}"])
    problems = [] if RANK[effective] <= RANK[lake["ceiling"]] else \
        [f"TLP:{effective} indexed above the ceiling {lake['ceiling']}"]
    for action in actions:
        got = action["_source"].get("sharing", {}).get("tlp")
        if got not in RANK or RANK[got] < RANK[effective]:
            problems.append(f"document label {got!r} for TLP:{effective}")
    return problems, []


def lake_copy_oracle(original: dict, truth: dict, agreement: dict, redaction: dict, lake: dict,
                     actions) -> list:
    """A recipient's copy in a lake fed by the router: the agreement's rules, the lake's ceiling, and
    the documents (label, hidden values, retention)."""
    problems, level = rule_problems(original, truth, agreement, lake["ceiling"])
    if level is None:
        return problems
    for action in actions:
        source = action["_source"]
        got = source.get("sharing", {}).get("tlp")
        if got not in RANK or RANK[got] < RANK[level]:
            problems.append(f"document label {got!r} for TLP:{level}")
        problems += clear_values(_with_raw(json.dumps(action, ensure_ascii=False), source.get("raw")),
                                 truth, agreement, redaction)
        if "retention_days" in agreement and (
                source.get("sharing", {}).get("retention_days") != agreement["retention_days"]
                or f"-r{agreement['retention_days']}d-" not in action["_index"]):
            problems.append("retention not carried")
    return problems


def stix_oracle(original: dict, truth: dict, agreement: dict, redaction: dict, cfg: dict, objects) -> list:
    """Problems with the STIX objects the TAXII output would push: the agreement's rules and the
    output's max_tlp; every object's marking ids (a reader may take any of them) never below the
    level; no identity of the originator where the source is hidden; no hidden value anywhere."""
    problems, level = rule_problems(original, truth, agreement, cfg["max"])
    if level is None:
        return problems
    problems += clear_values(json.dumps(objects, ensure_ascii=False), truth, agreement, redaction)
    hidden = truth["chr"] or not agreement.get("disclose_source", False)
    for obj in objects or []:
        if obj.get("type") == "identity":
            if hidden:
                problems.append("originator identity although the source is hidden")
            continue
        refs = obj.get("object_marking_refs") or []
        levels = [STIX_TLP_IDS.get(ref) for ref in refs]
        if not levels or None in levels:
            problems.append(f"{obj.get('type')} without a known TLP marking id")
        elif min(RANK[lv] for lv in levels) < RANK[level]:
            problems.append(f"{obj.get('type')} marked below TLP:{level}")
    return problems


# --- the run --------------------------------------------------------------------------------------

#: MISP events the audit's fake MISP keeps before it starts a new one (misp_updates), so the
#: cost per copy stays bounded.
MISP_EVENT_ATTRIBUTES = 4


OUTPUTS = ("exchange", "csaf", "misp", "misp_feed", "elasticsearch", "taxii")


def run(n_events: int = 100_000, n_agreements: int = 24, seed: int = 20261123, bypass_every: int = 20,
        misp_updates: bool = False, workers: Optional[int] = None, outputs=OUTPUTS, lake: bool = True,
        artifacts: bool = True) -> dict:
    """Generate and deliver ``n_events`` events; the counts as a dict (``leaks``: their sum).

    ``outputs`` (default: all) and ``lake`` (the hub's own lake) choose what is run; the events
    are the same whatever is chosen (the oracle tests run only the output they break).
    ``artifacts``: the exchange output writes signed bundles and the CSAF output (some recipients)
    advisories, in a temporary folder, and they are graded on those (else on the copy).

    ``workers`` processes share the events (event n goes to worker n % workers; every worker
    generates the whole stream, so the events, the agreements and, without ``misp_updates``,
    every count are the same for any number of workers, but the numbers of bundles and advisory
    versions: each worker seals and writes its own).  Default: 2 for 20,000 events or more
    on a machine with 2 cores or more, else 1."""
    if workers is None:
        workers = 2 if n_events >= 20_000 and (os.cpu_count() or 1) >= 2 else 1
    started = time.monotonic()
    args = (n_events, n_agreements, seed, bypass_every, misp_updates, tuple(outputs), lake, artifacts)
    if workers <= 1:
        parts = [_run_part(*args, 0, 1)]
    else:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:   # inherits test monkeypatches
            parts = pool.starmap(_run_part, [args + (w, workers) for w in range(workers)])
    total = {name: collections.Counter() for name in ("counts", "leaks", "overblocked", "by_truth", "by_seed",
                                                      "leaks_by_seed", "router_misses", "refusals",
                                                      "overblocked_by_seed")}
    examples = []
    for part in parts:
        for name in total:
            total[name].update(part[name])
        examples += part["examples"][:8 - len(examples)]
    return {"events": n_events, "agreements": parts[0]["agreements"], "seed": seed, "bypass_every": bypass_every,
            "misp_updates": misp_updates, "workers": workers,
            "events_by_true_tlp": dict(sorted(total["by_truth"].items())),
            "counts": dict(sorted(total["counts"].items())),
            "leaks": sum(total["leaks"].values()), "leaks_by_kind": dict(total["leaks"]),
            "overblocked": sum(total["overblocked"].values()), "overblocked_by_kind": dict(total["overblocked"]),
            **seed_summary(total), "examples": examples, "seconds": round(time.monotonic() - started, 1)}


def seed_class(seed: str) -> str:
    """The class of a seed ("conflict", "look-alike", "hidden source", "standard")."""
    return seed.split(":")[0]


def seed_summary(total: dict) -> dict:
    """The events, leaks, router misses and refusals of unreadable labels, per seed class and seed."""
    classes, seeds = collections.Counter(), collections.defaultdict(collections.Counter)
    for (seed, kind), n in total["leaks_by_seed"].items():
        classes[seed_class(seed)] += n
        seeds[seed][kind] += n
    events = collections.Counter()
    for seed, n in total["by_seed"].items():
        events[seed_class(seed)] += n
    return {"events_by_seed_class": dict(sorted(events.items())),
            "events_by_seed": dict(sorted(total["by_seed"].items())),
            "leaks_by_seed_class": {c: classes.get(c, 0) for c in sorted(events)},
            "leaks_by_seed": {seed: dict(kinds.most_common()) for seed, kinds in sorted(seeds.items())},
            "overblocked_by_seed_class": dict(sorted(total["overblocked_by_seed"].items())),
            "router_allowed_against_the_rules_by_seed": dict(sorted(total["router_misses"].items())),
            "unreadable_label_refusals": dict(sorted(total["refusals"].items()))}


def _run_part(n_events, n_agreements, seed, bypass_every, misp_updates, chosen, lake_on, artifacts_on,
              part, parts) -> dict:
    rng = random.Random(seed)
    key = b"leak-audit-hmac-key"
    docs, agreements = [], []
    while len(agreements) < n_agreements:
        doc = random_agreement(rng, len(docs))
        docs.append(doc)
        try:
            agreements.append((doc, policy_agreements.agreement_from_dict(doc, source=f"random-{doc['recipient']}")))
        except policy_agreements.AgreementError:
            continue                        # e.g. a pseudonym type the harmonization refuses: try another
    redactions = {a.recipient: {"remove": rng.sample(REMOVABLE, rng.randint(0, 2)),
                                "pseudonymise": rng.sample(["source.fqdn", "extra.note", "comment"],
                                                           rng.randint(0, 1))}
                  for _, a in agreements}
    outputs = {a.recipient: random_outputs(rng) for _, a in agreements}     # drawn for all: same events
    for _, a in agreements:      # the TAXII output from a stream of its own: the events stay the same
        taxii_rng = random.Random(f"{seed}:taxii:{a.recipient}")
        outputs[a.recipient]["taxii"] = random_taxii(taxii_rng)
        if taxii_rng.random() < 0.5:
            outputs[a.recipient]["has"].add("taxii")
    lakes = [random_lake(rng) for _ in range(3)]
    no_redaction = {"remove": [], "pseudonymise": []}
    server = None
    if misp_updates:
        from intelmq_crossborder.testing.fake_misp import FakeMISP
        server = FakeMISP()
    artifacts = _Artifacts(seed, [a.recipient for _, a in agreements]) \
        if artifacts_on and {"exchange", "csaf"} & set(chosen) else None
    guards = output_guards(server, artifacts)
    solo = {name: guard for name, guard in solo_guards().items() if name in chosen or name == "tlp expert"}
    lake_guard = guards["elasticsearch"]
    guards = {name: guard for name, guard in guards.items() if name in chosen}
    bypassed = [name for name in ("misp", "misp_feed") if name in chosen]
    misp_state: dict = {}
    counts = collections.Counter()
    leaks = collections.Counter()
    overblocked = collections.Counter()
    examples = []
    by_truth = collections.Counter()
    by_seed = collections.Counter()
    leaks_by_seed = collections.Counter()        # (seed, leak kind)
    router_misses = collections.Counter()        # seed -> copies the router allowed against the rules
    refusals = collections.Counter()             # how an unreadable label was refused, per path
    overblocked_by_seed = collections.Counter()
    recent: list = []

    def note(truth, output, problems):
        for p in problems:
            leaks_by_seed[(truth["seed"], f"{output}: {p}")] += 1

    def refused(path, truth, why):
        """How a path refused an event with an unreadable label (a dump should name the field)."""
        bad = truth.get("bad_field")
        if why.startswith("dumped:"):
            why = "dumped naming the field" if bad is None or bad in why else "dumped without naming the field"
        refusals[f"{path}: {why}"] += 1

    def grade(output, problems, event, truth, doc, copy, sent):
        if "seed" in truth:
            note(truth, output, problems)
        for p in problems:
            leaks[f"{output}: {p}"] += 1
        cls = seed_class(truth.get("seed", "(artifact)"))
        if problems and len(examples) < 8 and sum(e["seed"] == cls for e in examples) < 2:
            examples.append({"seed": cls, "event": event, "truth": {k: (sorted(v) if isinstance(v, set) else v)
                                                       for k, v in truth.items()},
                             "agreement": doc, "output": output, "copy": copy, "sent": sent,
                             "problems": problems})

    def bundle_graded(recipient, spool):
        """The bundle the exchange output just sealed, opened and graded as the receiving hub reads it."""
        path = spool.outbox / spool.state["last_bundle"]
        problems, n = bundle_problems(path, artifacts.trust, recipient, artifacts.pending.pop(recipient, []), note)
        counts["exchange bundles verified"] += 1
        counts["exchange events graded from bundles"] += n
        grade("exchange", problems, {"bundle": path.name}, {}, {"recipient": recipient}, None, None)
        path.unlink()

    def documents_graded(recipient, state, out_max):
        """The CSAF advisories the output just wrote, read from disk and graded."""
        for path in state.written:
            problems, n = csaf_document_problems(path, state.directory.root, state.groups, out_max, note)
            counts["csaf documents graded"] += 1
            counts["csaf events graded from documents"] += n
            grade("csaf", problems, {"document": path}, {}, {"recipient": recipient}, None, None)
        state.written.clear()

    def deliver(output, copy, event, truth, doc, agreement, red, prefix=""):
        cfg = outputs[agreement.recipient][output]
        csaf_state = artifacts.csaf(agreement.recipient) if artifacts and output == "csaf" else None
        if csaf_state is not None:     # a vulnerability event, so the output writes an advisory
            copy = dict(copy, **{"product.vulnerabilities": f"CVE-2026-{10000 + current_n % CSAF_CVES}"})
        written, why, sent = guards[output](copy, cfg, agreement, key)
        if csaf_state is not None:
            if written:
                level = rule_problems(event, truth, doc, cfg)[1]
                if level is not None:
                    csaf_state.groups[csaf_state.pending.last].append((event, truth, doc, red, level))
                    counts["csaf events written into documents"] += 1
            documents_graded(agreement.recipient, csaf_state, cfg)
        if not written:
            counts[f"{prefix}{output} guard withheld"] += 1
            if prefix and truth["level"] == "unknown":
                refused(prefix + output, truth, why)
            return
        counts[f"{prefix}{output} {why}"] += 1
        if output == "exchange" and artifacts is not None:     # graded when read from its bundle
            artifacts.pending[agreement.recipient].append((event, truth, doc, red, cfg))
            if sent.count == 0:
                bundle_graded(agreement.recipient, sent)
            return
        if output in ("exchange", "csaf"):
            problems = oracle(event, truth, doc, red, cfg, copy)
        elif output == "elasticsearch":
            problems = lake_copy_oracle(event, truth, doc, red, cfg, sent)
        elif output == "taxii":
            problems = stix_oracle(event, truth, doc, red, cfg, sent)
        else:
            problems = misp_oracle(event, truth, doc, red, cfg, sent, api=output == "misp")
            if output == "misp" and server is not None:
                problems += _misp_state(agreement.recipient, truth, sent)
        grade(prefix + output, problems, event, truth, doc, copy, sent)

    def _misp_state(recipient, truth, sent):
        """The events kept on the fake MISP: each one's TLP tag covers every copy written into it."""
        problems = []
        level = truth["level"] if truth["level"] in RANK else None
        for path, body, _ in sent:
            parts = path.strip("/").split("/")
            uuid = body.get("uuid") if parts[:2] == ["events", "add"] else \
                parts[2] if parts[0] in ("events", "attributes") and parts[1] in ("edit", "add") else None
            if parts[:2] == ["attributes", "edit"]:
                uuid = next((u for u, e in server.events.items()
                             if any(a["uuid"] == parts[2] for a in e["Attribute"])), None)
            if uuid is None or uuid not in server.events:
                continue
            counts[f"misp {parts[0]}/{parts[1]}"] += 1
            state = misp_state.setdefault((recipient, uuid), {"level": "CLEAR", "chr": False})
            if level is not None and RANK[level] > RANK[state["level"]]:
                state["level"] = level
            state["chr"] |= truth["chr"]
            stored = server.events[uuid]
            problems += [f"stored {p}" for p in _tag_problems("event", stored.get("Tag"), state["level"],
                                                              state["chr"])]
            if len(stored["Attribute"]) >= MISP_EVENT_ATTRIBUTES:      # start a new event for this key
                del server.events[uuid]
                guards["misp"].bot._pusher.cache.pop(uuid, None)
                misp_state.pop((recipient, uuid), None)
        return problems

    current_n = 0
    for n in range(n_events):
        event, truth = random_event(rng, n, recent)
        lake_index = rng.randrange(len(lakes))
        if n % parts != part:
            continue
        current_n = n
        by_truth[str(truth["level"])] += 1
        by_seed[truth["seed"]] += 1
        # the hub's own lake (one of three) takes every event as it arrived
        if lake_on:
            lake = lakes[lake_index]
            written, why, sent = lake_guard(event, lake, None, key)
            counts["lake " + ("indexed" if written else "withheld")] += 1
            if not written and truth["level"] == "unknown":
                refused("lake", truth, why)
            found, over = lake_oracle(truth, lake, written, sent or [])
            grade("lake", found, event, truth, {"lake": lake_index, **lake}, event, sent)
            for o in over:
                overblocked[f"lake: {o}"] += 1
                overblocked_by_seed[seed_class(truth["seed"])] += 1
        # the exchange and CSAF outputs without the router (an event of a seed class, as it arrived,
        # with one recipient's configuration in turn)
        if solo and truth["seed"] != "standard":
            recipient = agreements[n % len(agreements)][1].recipient
            for output, guard in solo.items():
                out_max = outputs[recipient]["elasticsearch"]["default"] if output == "tlp expert" else \
                    outputs[recipient][output]
                written, why, sent = guard(event, out_max, None, key)
                counts[f"solo {output} " + ("written" if written else "withheld")] += 1
                if not written and truth["level"] == "unknown":
                    refused("solo " + output, truth, why)
                problems = expert_oracle(truth, out_max, written, sent) if output == "tlp expert" else \
                    solo_oracle(output, truth, out_max, written, sent)
                grade("solo " + output, problems, event, truth, {"solo": recipient}, event, sent)
        # the sharing router, as its expert calls the policy; an exception there is an event the
        # expert does not forward (IntelMQ dumps it)
        try:
            facts, router_error = policy_decide.event_facts(event), None
        except Exception as exc:
            facts, router_error = None, f"raised {type(exc).__name__}"
            counts[f"router {router_error}"] += 1
        bypass = bypass_every and n % bypass_every == 0
        allowed_any, first_reasons = False, None
        for doc, agreement in agreements:
            counts["decisions"] += 1
            if bypass:      # the MISP outputs' own agreement check, without the router in front
                for output in bypassed:
                    if output in outputs[agreement.recipient]["has"]:
                        deliver(output, event, event, truth, doc, agreement, no_redaction, prefix="bypass ")
            if facts is None:
                counts["router denied"] += 1
                continue
            try:
                decision = policy_decide.decide(event, agreement, hmac_key=key, facts=facts)
            except Exception as exc:
                router_error = f"decide raised {type(exc).__name__}"
                counts[f"router {router_error}"] += 1
                continue
            if first_reasons is None:
                first_reasons = decision.reasons
            if not decision.allowed:
                counts["router denied"] += 1
                continue
            counts["router allowed"] += 1
            counts[f"router allowed, {seed_class(truth['seed'])}"] += 1
            allowed_any = True
            if rule_problems(event, truth, doc)[0]:
                router_misses[truth["seed"]] += 1
            red = redactions[agreement.recipient]
            copy, _, _ = policy_redact.redact(decision.event_out, remove=red["remove"], pseudonymise=red["pseudonymise"],
                                       key=key)
            for output in guards:
                if output in outputs[agreement.recipient]["has"]:
                    deliver(output, copy, event, truth, doc, agreement, red)
        if truth["level"] == "unknown" and not allowed_any:
            if router_error is not None:
                refusals[f"router: {router_error}"] += 1
            else:
                text = " ".join(map(str, first_reasons or []))
                refused("router", truth, "dumped: " + text if text.startswith("tlp-unreadable")
                        else "denied: " + text.split(":", 1)[0])
    if server is not None:
        server.stop()
    if artifacts is not None:
        try:
            for recipient, spool in artifacts.spools.items():     # the last, partial bundles
                if spool.count and spool.seal() is not None:
                    bundle_graded(recipient, spool)
            for recipient, state in artifacts._csaf.items():     # the bot writes what is pending at its stop
                bot = guards["csaf"].bot
                bot._spool = state.spool
                bot.shutdown()
                documents_graded(recipient, state, outputs[recipient]["csaf"])
                grade("csaf", csaf_publication_problems(state.directory.root), {}, {}, {"recipient": recipient},
                      None, None)
        finally:
            artifacts.close()
    return {"agreements": len(agreements), "counts": counts, "leaks": leaks, "overblocked": overblocked,
            "by_truth": by_truth, "by_seed": by_seed, "leaks_by_seed": leaks_by_seed, "router_misses": router_misses,
            "refusals": refusals, "overblocked_by_seed": overblocked_by_seed, "examples": examples}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--agreements", type=int, default=24)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--bypass-every", type=int, default=20,
                        help="every N-th event also goes to the MISP outputs without the router (0: none)")
    parser.add_argument("--misp-updates", action="store_true",
                        help="keep the MISP output's events on a fake MISP (updates, tag tightening)")
    parser.add_argument("--no-artifacts", action="store_true",
                        help="grade the exchange and CSAF outputs on the copy only (no bundles, no advisories)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes sharing the events (default: 2 from 20,000 events on 2+ cores)")
    args = parser.parse_args(argv)
    result = run(args.events, args.agreements, args.seed, args.bypass_every, args.misp_updates, args.workers,
                 artifacts=not args.no_artifacts)
    print(json.dumps(result, indent=1, default=str))
    return 0 if result["leaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
