"""BotTestCase tests of the cross-border MISP feed output (manifest.json, <uuid>.json, hashes.csv)."""
import hashlib
import json
import shutil
import tempfile
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from pymisp import MISPEvent

from intelmq_crossborder.bots.outputs.misp_feed.output import CrossBorderMISPFeedOutputBot

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "misp"
PEER = str(FIX / "agreements" / "peer-hub-de.yaml")
#: What names or points at a source that must stay hidden (tlp.SOURCE_FIELDS), with values to search for.
HIDDEN_SOURCE = {"feed.url": "https://feeds.secret-originator.example/cti", "feed.name": "Secret Originator Feed",
                 "event_description.url": "https://misp.secret-originator.example/events/view/4242",
                 "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                 "provenance.originator": "cert-secret-originator"}


def ev(ip="192.0.2.1", tlp="GREEN", day="2024-05-01", **fields):
    out = {"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
           "source.ip": ip, "sharing.tlp": tlp, "time.observation": f"{day}T10:00:00+00:00"}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestCrossBorderMISPFeedOutputBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPFeedOutputBot
        cls.sysconfig = {"feed_directory": "/tmp/unused-feed", "agreement_file": PEER, "org_name": "Hub AT"}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="misp-feed-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, events, allowed_error_count=0, **params):
        self.input_message = events
        params.setdefault("feed_directory", str(self.dir))
        self.run_bot(iterations=len(events), parameters=params, allowed_error_count=allowed_error_count)

    def files(self):
        """name -> (content, inode): a rewrite (temporary file + rename) changes the inode."""
        return {p.name: (p.read_text(), p.stat().st_ino) for p in sorted(self.dir.iterdir())}

    def test_standard_feed_layout(self):
        self.write([ev("192.0.2.1"), ev("192.0.2.2", tlp="AMBER"), ev("203.0.113.5", day="2024-05-02")])
        manifest = json.loads((self.dir / "manifest.json").read_text())
        self.assertEqual(len(manifest), 2)
        real = json.loads((FIX / "misp-core" / "feed" / "manifest.json").read_text())
        real_keys = set(next(iter(real.values())))
        for uuid, entry in manifest.items():
            self.assertTrue(real_keys <= set(entry), real_keys - set(entry))   # same shape as MISP's own feed
            self.assertTrue((self.dir / f"{uuid}.json").exists())
            event = MISPEvent()
            event.load_file(str(self.dir / f"{uuid}.json"))                   # readable by PyMISP
            self.assertEqual(str(event.uuid), uuid)
            self.assertEqual(event.Orgc.name, "Hub AT")
        day1 = [e for e in manifest.values() if e["date"] == "2024-05-01"][0]
        self.assertEqual({t["name"] for t in day1["Tag"]} & {"tlp:amber", "tlp:green"}, {"tlp:amber"})
        lines = (self.dir / "hashes.csv").read_text().splitlines()
        self.assertEqual(len(lines), 3)
        md5 = hashlib.md5(b"192.0.2.1").hexdigest()
        self.assertTrue(any(line.startswith(md5 + ",") and line.split(",")[1] in manifest for line in lines))

    def test_incremental_and_idempotent(self):
        self.write([ev("192.0.2.1")])
        before = self.files()
        self.write([ev("192.0.2.1")])
        self.assertEqual(self.files(), before)             # re-run: nothing rewritten
        self.write([ev("192.0.2.9")])                      # same group: the event grows, still one event
        manifest = json.loads((self.dir / "manifest.json").read_text())
        self.assertEqual(len(manifest), 1)
        (uuid,) = manifest
        data = json.loads((self.dir / f"{uuid}.json").read_text())
        self.assertEqual({a["value"] for a in data["Event"]["Attribute"]}, {"192.0.2.1", "192.0.2.9"})
        self.assertEqual(len((self.dir / "hashes.csv").read_text().splitlines()), 2)

    def test_agreement_forbids(self):
        self.write([ev(tlp="RED"), ev(tlp="AMBER+STRICT")], allowed_error_count=2)
        self.assertRegexpMatchesLog(r"TLP:RED is never forwarded automatically; not written to the MISP feed")
        self.assertRegexpMatchesLog(r"TLP:AMBER\+STRICT never leaves the organisation .*not written to the MISP feed")
        self.assertFalse((self.dir / "manifest.json").exists())

    def test_effective_tlp_is_the_most_restrictive_label(self):
        # issue 12: sharing.tlp GREEN does not lower a tlp:red / tlp:amber tag of the event
        self.write([ev(extra__misp_tags=[{"name": "tlp:red"}])], allowed_error_count=1)
        self.assertRegexpMatchesLog(r"for key 'extra\.misp_tags\[0\]\.name': TLP:RED is never forwarded")
        self.assertFalse((self.dir / "manifest.json").exists())
        self.write([ev(extra__tags="osint,tlp:amber")])
        (entry,) = json.loads((self.dir / "manifest.json").read_text()).values()
        self.assertEqual({t["name"] for t in entry["Tag"] if t["name"].startswith("tlp:")}, {"tlp:amber"})

    def test_hostile_labels_are_dumped_with_the_field_named(self):
        for base, value, field in (("extra.tlp", ["RED"], r"extra\.tlp"),
                                   ("extra.misp_tags", [{"name": "tlp\u200b:red"}], r"extra\.misp_tags\[0\]\.name"),
                                   ("extra.misp_tags", [{"colour": "#cc0033"}], r"extra\.misp_tags\[0\]")):
            self.write([ev(**{base.replace(".", "__"): value})], allowed_error_count=1)
            self.assertRegexpMatchesLog(f"for key '{field}'")
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_hidden_source_never_in_the_feed(self):
        from intelmq_crossborder.formats.misp import convert as misp
        flagged = ev(**HIDDEN_SOURCE, sharing__do_not_disclose_source=True)
        chr_tag = ev("192.0.2.2", **HIDDEN_SOURCE, extra__misp_tags=[{"name": "tlp:ex:chr"}])
        self.write([flagged, chr_tag], grouping="incident", incident_field="misp.event_uuid",
                   event_info="{recipient} {key} {feed} {incident} {day}")
        written = "".join(p.read_text() for p in self.dir.iterdir())
        for field, value in HIDDEN_SOURCE.items():
            self.assertNotIn(value, written, field)
        self.assertNotIn("secret-originator", written.lower())
        (uuid,) = json.loads((self.dir / "manifest.json").read_text())
        guessable = {misp.deterministic_uuid("peer-hub-de", f"incident:{HIDDEN_SOURCE['misp.event_uuid']}"),
                     misp.deterministic_uuid("peer-hub-de", f"feed:{HIDDEN_SOURCE['feed.name']}:2024-05-01")}
        self.assertNotIn(uuid, guessable)
        self.assertIn("tlp:ex:chr", written)

    def test_hidden_source_not_in_the_event_title_of_the_hubs_copy(self):
        # Regression (leak audit): {key} in event_info came from the hub's copy and showed the feed
        # name the community agreement hides, in the event file and in manifest.json.
        self.write([ev()], agreement_file=str(FIX / "agreements" / "community-isac.yaml"), event_info="{key}")
        manifest = json.loads((self.dir / "manifest.json").read_text())
        self.assertEqual([e["info"] for e in manifest.values()], ["feed:unknown-feed:2024-05-01"])
        for path in self.dir.iterdir():
            self.assertNotIn("member-misp", path.read_text(), path.name)

    def test_source_distribution_organisation_only_is_refused(self):
        self.write([ev(misp__distribution=0)], allowed_error_count=1)
        self.assertRegexpMatchesLog(r"MISP distribution 0 .*not written to the MISP feed")
        self.assertFalse((self.dir / "manifest.json").exists())

    def test_feed_has_no_distribution_or_sharing_group(self):
        self.write([ev()])
        (name,) = [n for n in self.files() if n.endswith(".json") and n != "manifest.json"]
        event = json.loads((self.dir / name).read_text())["Event"]
        self.assertNotIn("distribution", event)
        self.assertNotIn("SharingGroup", event)

    def test_manager_empty_values_for_every_optional_parameter(self):
        empty = {name: "" for name in ("hmac_key_env", "org_name", "org_uuid", "grouping", "incident_field",
                                       "event_info", "extra_tags", "refuse_distributions")}
        self.assertIsNone(CrossBorderMISPFeedOutputBot.check(dict(self.sysconfig, **empty)))
        self.write([ev(), ev("192.0.2.2", misp__distribution=0)], allowed_error_count=1, **empty)
        (name,) = [n for n in self.files() if n not in ("manifest.json", "hashes.csv")]
        event = json.loads((self.dir / name).read_text())["Event"]
        self.assertEqual((event["info"], event["Orgc"]["name"]), ("member-misp 2024-05-01", "intelmq-crossborder hub"))
        self.assertEqual([a["value"] for a in event["Attribute"]], ["192.0.2.1"])     # distribution 0 refused

    def test_check(self):
        self.assertIsNone(CrossBorderMISPFeedOutputBot.check(self.sysconfig))
        self.assertEqual(CrossBorderMISPFeedOutputBot.check({"agreement_file": PEER})[0][0], "error")


if __name__ == "__main__":
    unittest.main()
