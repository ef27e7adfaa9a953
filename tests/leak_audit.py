"""Leak audit: random events x random agreements through the real share path, graded by an
independent oracle.

The path each event takes, in process (the same library functions and bot code the real
processes run, without Redis):

1. the sharing router's decision (``policy.event_facts`` + ``policy.decide`` per agreement, as
   ``bots/experts/sharing_router/expert.py`` calls them);
2. a redaction expert on the recipient's path (``policy.redact`` with per-recipient random
   extra fields to remove / pseudonymise, as ``bots/experts/redaction/expert.py``);
3. every output's own TLP guard, by running the real bots' ``process()`` up to the point where
   they would write: the exchange (bundle) output and the CSAF output, each with a random
   ``max_tlp`` per recipient.

The oracle knows the *ground truth* of every event because it generated it: the true TLP
level behind whatever spelling was used (or "unknown"/"missing"), the distinctive value of
every field, the PAP, the hub path.  It re-states the TLP 2.0 and agreement rules from the
specification (issue 3 / docs) without calling ``policy`` or ``tlp``: the router is not graded
with its own code.  A *leak* is any copy that reaches an output although the rules say it
must not, or that carries a removed/pseudonymised/hidden value in clear (also inside ``raw``)
or a TLP label lower than the truth.

``python tests/leak_audit.py [--events N] [--agreements M] [--seed S]`` prints the counts as
JSON; ``tests/test_leak_audit.py`` runs 100,000 events x 24 agreements and asserts 0 leaks.
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import random
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intelmq.lib.exceptions import InvalidValue  # noqa: E402

from intelmq_crossborder import policy  # noqa: E402  (the system under audit)

# --- the specification, restated independently -----------------------------------------------
ORDER = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]
RANK = {name: i for i, name in enumerate(ORDER)}
RELATION_CAP = {"same-organisation": "AMBER+STRICT", "constituent": "AMBER", "community": "GREEN"}
PAP_RANK = {"CLEAR": 0, "GREEN": 1, "AMBER": 2, "RED": 3}
ORIGINATOR = ["provenance.originator", "feed.provider", "feed.name", "feed.code", "feed.url",
              "feed.documentation", "csaf.publisher", "csaf.document_url", "csaf.tracking_id"]
STIX2 = {"CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
         "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
         "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
         "AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
         "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"}
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
    "provenance.originator": lambda t: f"orig-{t}",
    "csaf.tracking_id": lambda t: f"TID-{t}",
}
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


def random_event(rng: random.Random, n: int) -> tuple:
    """(event, truth): truth holds the level ('CLEAR'..'RED', 'unknown' or None) and the clear values."""
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
    ev.update(values)
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
    # TLP: in sharing.tlp (authoritative), or in the stock/extra label fields, or missing/unknown.
    r = rng.random()
    if r < 0.6:
        level = rng.choice(ORDER + ["unknown"] if rng.random() < 0.1 else ORDER)
        ev["sharing.tlp"] = rng.choice(UNKNOWN) if level == "unknown" else rng.choice(SPELLINGS[level])
        if rng.random() < 0.2:   # a stale, different label elsewhere: sharing.tlp still decides
            ev["extra.tlp"] = rng.choice(SPELLINGS[rng.choice(ORDER)][:4])
    elif r < 0.85:
        levels = []
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
            levels.append(lvl)
        level = "unknown" if "unknown" in levels else (max(levels, key=RANK.get) if levels else None)
    else:
        level = None
    if rng.random() < 0.5:
        ev["raw"] = base64.b64encode(json.dumps(values).encode()).decode()
    return ev, {"level": level, "values": values, "pap": pap_truth, "chr": chr_flag,
                "hubs": set(ev.get("provenance.hub_path", "").split(",")) - {""}}


# --- the real outputs' TLP guards -----------------------------------------------------------------

class _Passed(Exception):
    """The output's guard let the event through (it would now be written)."""


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


def output_guards() -> dict:
    """name -> function(event_copy, max_tlp_label, agreement, key) -> (written?, reason); runs the real
    bots' process() up to the point where they would write."""
    from intelmq_crossborder.bots.outputs.csaf.output import CrossBorderCSAFOutputBot
    from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
    from intelmq_crossborder.bots.outputs.misp_feed.output import CrossBorderMISPFeedOutputBot
    from intelmq_crossborder import tlp as _tlp

    def make(cls, setup):
        # A bare instance: no IntelMQ set-up (no Redis, no config); __del__ would "stop" it noisily.
        bot = object.__new__(type(cls.__name__, (cls,), {"__del__": lambda self: None}))
        setup(bot)

        def run(event: dict, max_label: str, agreement, key):
            bot._current = _FlatEvent(event)
            bot.receive_message = lambda: bot._current
            bot._max_level = bot._max = _tlp.Level.from_label(max_label)
            bot.agreement, bot._hmac_key = agreement, key
            try:
                bot.process()
            except _Passed:
                return True, "written"
            except InvalidValue as exc:
                return False, "dumped: " + str(exc).split("reason:")[-1][:60]
            except Exception as exc:            # the bot would log it, retry and dump: not written
                return False, f"error: {type(exc).__name__}"
            return False, "returned without writing"
        return run

    def exchange_setup(bot):
        bot.recipient = "audit"
        bot._lock = _RaiseOnUse()

    def csaf_setup(bot):
        bot.group_by = _RaiseOnUse()
        bot.fallback_group_by = []
    def misp_feed_setup(bot):          # its guard: the recipient's agreement again, and MISP distribution 0
        bot.refuse_distributions = [0]
        bot._settings = _RaiseOnUse()
    return {"exchange": make(CrossBorderExchangeOutputBot, exchange_setup),
            "csaf": make(CrossBorderCSAFOutputBot, csaf_setup),
            "misp_feed": make(CrossBorderMISPFeedOutputBot, misp_feed_setup)}


# --- the oracle ---------------------------------------------------------------------------------

def oracle(original: dict, truth: dict, agreement: dict, redaction: dict, out_max: str, copy: dict) -> list:
    """Problems with ``copy`` reaching an output; [] when the rules allow it."""
    problems = []
    level = truth["level"]
    if level == "unknown":
        return ["unreadable TLP label delivered"]
    if level is None:
        rule = agreement.get("no_label", "deny")
        if rule == "deny":
            return ["unlabelled event delivered although no_label is deny"]
        level = rule if rule in RANK else "unknown"
        if level == "unknown":
            return ["no_label spelled oddly"]
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
    got = copy.get("sharing.tlp")
    if got not in RANK or RANK[got] < RANK[level]:
        problems.append(f"label downgraded: {got!r} for TLP:{level}")
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
    # Values that must not appear in clear anywhere in the copy (raw decoded too).
    hidden = set(agreement.get("remove_fields", [])) | set(agreement.get("pseudonymise_fields", [])) | \
        set(redaction["remove"]) | set(redaction["pseudonymise"])
    if not agreement.get("disclose_source", False) or truth["chr"]:
        hidden |= set(ORIGINATOR)
    text = json.dumps(copy, ensure_ascii=False)
    if "raw" in copy:
        try:
            text += base64.b64decode(copy["raw"]).decode("utf-8", "replace")
        except ValueError:
            pass
    for name, value in truth["values"].items():
        if any(_matches(p, name) for p in hidden) and value in text:
            problems.append(f"{name} in clear")
    if "retention_days" in agreement and copy.get("sharing.retention_days") != agreement["retention_days"]:
        problems.append("retention not carried")
    return problems


# --- the run --------------------------------------------------------------------------------------

def run(n_events: int = 100_000, n_agreements: int = 24, seed: int = 20261123) -> dict:
    rng = random.Random(seed)
    key = b"leak-audit-hmac-key"
    docs, agreements = [], []
    while len(agreements) < n_agreements:
        doc = random_agreement(rng, len(docs))
        docs.append(doc)
        try:
            agreements.append((doc, policy.agreement_from_dict(doc, source=f"random-{doc['recipient']}")))
        except policy.AgreementError:
            continue                        # e.g. a pseudonym type the harmonization refuses: try another
    redactions = {a.recipient: {"remove": rng.sample(REMOVABLE, rng.randint(0, 2)),
                                "pseudonymise": rng.sample(["source.fqdn", "extra.note", "comment"],
                                                           rng.randint(0, 1))}
                  for _, a in agreements}
    # misp_feed has no max_tlp of its own (its guard is the agreement): "RED" = no extra limit.
    out_max = {a.recipient: {"exchange": rng.choice(ORDER[:3]), "csaf": rng.choice(ORDER), "misp_feed": "RED"}
               for _, a in agreements}
    guards = output_guards()
    counts = collections.Counter()
    leaks = collections.Counter()
    examples = []
    by_truth = collections.Counter()
    started = time.monotonic()
    for n in range(n_events):
        event, truth = random_event(rng, n)
        by_truth[str(truth["level"])] += 1
        facts = policy.event_facts(event)
        for doc, agreement in agreements:
            counts["decisions"] += 1
            decision = policy.decide(event, agreement, hmac_key=key, facts=facts)
            if not decision.allowed:
                counts["router denied"] += 1
                continue
            counts["router allowed"] += 1
            red = redactions[agreement.recipient]
            copy, _, _ = policy.redact(decision.event_out, remove=red["remove"], pseudonymise=red["pseudonymise"],
                                       key=key)
            for output, guard in guards.items():
                written, why = guard(copy, out_max[agreement.recipient][output], agreement, key)
                if not written:
                    counts[f"{output} guard withheld"] += 1
                    continue
                counts[f"{output} written"] += 1
                problems = oracle(event, truth, doc, red, out_max[agreement.recipient][output], copy)
                for p in problems:
                    leaks[f"{output}: {p}"] += 1
                if problems and len(examples) < 5:
                    examples.append({"event": event, "truth": {k: (sorted(v) if isinstance(v, set) else v)
                                                               for k, v in truth.items()},
                                     "agreement": doc, "output": output, "copy": copy, "problems": problems})
    return {"events": n_events, "agreements": len(agreements), "seed": seed,
            "events_by_true_tlp": dict(sorted(by_truth.items())), "counts": dict(counts),
            "leaks": sum(leaks.values()), "leaks_by_kind": dict(leaks), "examples": examples,
            "seconds": round(time.monotonic() - started, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--agreements", type=int, default=24)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    result = run(args.events, args.agreements, args.seed)
    print(json.dumps(result, indent=1, default=str))
    return 0 if result["leaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
