"""The cross-border file output (BotTestCase): IntelMQ's file output for JSON lines, and
retractions applied to the file (docs/bots/file.md): withdraw and relabel append a tombstone,
erase rewrites the file and its rotated copies without the target's lines."""
import json
import os
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path
from types import SimpleNamespace

from intelmq.bots.outputs.file.output import FileOutputBot
from intelmq.lib import message

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.bots.outputs.file.output import CrossBorderFileOutputBot
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.demo import retraction as demo
from intelmq_crossborder.policy.retraction import ROUTING_FIELDS, Retraction, confirmation, new_retraction


def make_event(ip: str, account: str, **extra) -> dict:
    ev = {"__type": "Event", "classification.type": "phishing", "classification.taxonomy": "fraud",
          "source.ip": ip, "source.account": account, "source.url": f"http://{ip}/login",
          "feed.name": "Originator", "sharing.tlp": "GREEN", "provenance.event_uuid": str(uuid.uuid4()),
          "raw": "c2VjcmV0IHJhdw=="}
    ev.update(extra)
    ev["provenance.fingerprint"] = fingerprint(ev)
    return ev


TARGET = make_event("198.51.100.23", "jane.doe@example.org")
OTHER = make_event("192.0.2.77", "ops@example.net")


def retraction(action: str, target=TARGET, **extra) -> dict:
    r = new_retraction(action, "demo reason", "de-hub", target_event_uuid=target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"], **extra)
    return dict(r.to_event(), **{"__type": "Event", "sharing.agreement": "soc", "provenance.hub_path": "de-hub"})


def records(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


class FileCase(CrossBorderBotTestCase):
    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-file-output-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = self.dir / "events.txt"

    def feed(self, messages, allowed_warning_count=0, allowed_error_count=0, **params):
        self.input_message = list(messages)
        self.run_bot(iterations=len(messages), parameters=dict({"file": str(self.path)}, **params),
                     allowed_warning_count=allowed_warning_count, allowed_error_count=allowed_error_count)


class TestCrossBorderFileOutput(FileCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderFileOutputBot
        cls.sysconfig = {"file": "/tmp/xb-unused/events.txt"}

    def stock_lines(self, messages, **params) -> bytes:
        """What IntelMQ's stock file output writes for these messages (its export: raw dropped
        unless keep_raw_field, then Event.to_json with its flags), one line each."""
        out = b""
        for msg in messages:
            ev = message.MessageFactory.from_dict(dict(msg), harmonization=self.harmonization)
            if not params.get("keep_raw_field") and "raw" in ev:
                del ev["raw"]
            out += ev.to_json(hierarchical=params.get("hierarchical_output", False),
                              with_type=params.get("message_with_type", False),
                              jsondict_as_string=params.get("message_jsondict_as_string", False)).encode() + b"\n"
        return out

    def test_events_are_written_as_the_stock_output_writes_them(self):
        for params in ({}, {"hierarchical_output": True}, {"message_with_type": True, "keep_raw_field": True},
                       {"message_jsondict_as_string": True}):
            self.path.unlink(missing_ok=True)
            msgs = [TARGET, dict(OTHER, **{"extra.note": {"a": 1}})]
            self.feed(msgs, **params)
            self.assertEqual(self.path.read_bytes(), self.stock_lines(msgs, **params), params)

    def test_erase_removes_the_values_and_leaves_a_tombstone(self):
        self.feed([TARGET, OTHER, TARGET, retraction("erase")])
        data = self.path.read_bytes()
        for value in ("198.51.100.23", "jane.doe@example.org", "c2VjcmV0IHJhdw=="):
            self.assertNotIn(value.encode(), data)
        recs = records(self.path)
        self.assertEqual([r.get("provenance.event_uuid") for r in recs[:-1]], [OTHER["provenance.event_uuid"]])
        tomb = recs[-1]
        self.assertTrue(all(k.startswith("retraction.") or k in ROUTING_FIELDS for k in tomb), tomb)
        self.assertEqual(Retraction.from_event(tomb).action, "erase")
        self.assertLogMatches(r"Retraction .* \(erase of event .*\): 2 line\(s\) removed from 1 file\(s\).*", "INFO")
        self.feed([retraction("erase"), OTHER])           # again (a retry): nothing left; writing goes on
        self.assertEqual(len(records(self.path)), 4)
        self.assertNotIn(b"198.51.100.23", self.path.read_bytes())

    def test_hierarchical_file_erase(self):
        self.feed([TARGET, OTHER, retraction("erase")], hierarchical_output=True)
        recs = records(self.path)
        self.assertEqual([r["provenance"].get("event_uuid") for r in recs if "provenance" in r and
                          "event_uuid" in r["provenance"]], [OTHER["provenance.event_uuid"]])
        self.assertIn("retraction", recs[-1])
        self.assertNotIn(b"jane.doe", self.path.read_bytes())

    def test_withdraw_and_relabel_append_a_tombstone_and_keep_the_lines(self):
        self.feed([TARGET, retraction("withdraw"), retraction("relabel", new_tlp="AMBER")])
        recs = records(self.path)
        self.assertEqual(recs[0]["source.ip"], "198.51.100.23")
        self.assertEqual([Retraction.from_event(r).action for r in recs[1:]], ["withdraw", "relabel"])
        self.assertEqual(recs[2]["retraction.new_tlp"], "AMBER")

    def test_relabel_above_the_ceiling_removes(self):
        self.feed([TARGET, OTHER, retraction("relabel", new_tlp="RED")], tlp_ceiling="AMBER")
        self.assertNotIn(b"198.51.100.23", self.path.read_bytes())
        self.feed([OTHER, retraction("relabel", target=OTHER, new_tlp="AMBER")], tlp_ceiling="AMBER")
        self.assertEqual(sum(1 for r in records(self.path) if r.get("source.ip") == "192.0.2.77"), 2)

    def test_rotated_copies_are_purged_and_compressed_ones_named(self):
        self.feed([TARGET, OTHER])
        os.replace(self.path, self.dir / "events.txt.1")
        (self.dir / "events.txt.2.gz").write_bytes(b"\x1f\x8bcompressed")
        self.feed([TARGET, retraction("erase")], allowed_warning_count=1)
        self.assertNotIn(b"198.51.100.23", (self.dir / "events.txt.1").read_bytes())
        self.assertIn(b"192.0.2.77", (self.dir / "events.txt.1").read_bytes())
        self.assertNotIn(b"198.51.100.23", self.path.read_bytes())
        self.assertEqual((self.dir / "events.txt.2.gz").read_bytes(), b"\x1f\x8bcompressed")
        self.assertLogMatches(r".*1 compressed rotated file\(s\) not reached \(events\.txt\.2\.gz\).*", "WARNING")
        self.assertLogMatches(r".*2 line\(s\) removed from 2 file\(s\).*", "INFO")

    def test_a_file_name_spelt_differently_is_still_the_file_rewritten(self):
        spelt = str(self.dir) + "//./events.txt"
        self.feed([TARGET, OTHER, retraction("erase"), OTHER], file=spelt)
        self.assertNotIn(b"198.51.100.23", self.path.read_bytes())
        self.assertEqual(len(records(self.path)), 3)        # the line after the erase is in the new file

    def test_rotated_files_false_leaves_them(self):
        self.feed([TARGET])
        os.replace(self.path, self.dir / "events.txt.1")
        self.feed([retraction("erase")], rotated_files=False)
        self.assertIn(b"198.51.100.23", (self.dir / "events.txt.1").read_bytes())

    def test_hostile_lines_in_the_file_are_kept_and_counted(self):
        hostile = b"not json\n\xff\xfe bytes\n[1,2]\n" + b'{"provenance.event_uuid": 7}\n'
        self.path.write_bytes(hostile)
        self.feed([TARGET, retraction("erase")], allowed_warning_count=3)
        self.assertTrue(self.path.read_bytes().startswith(hostile))
        self.assertNotIn(b"198.51.100.23", self.path.read_bytes())
        self.assertLogMatches(r".*4 unreadable line\(s\) kept as they are\.", "INFO")

    def test_a_bad_retraction_is_dumped_naming_the_field(self):
        self.feed([TARGET, dict(retraction("erase"), **{"source.ip": "192.0.2.1"})], allowed_error_count=1)
        self.assertLogMatches(r".*source\.ip.*carries no event content.*not applied.*", "ERROR")
        self.assertIn(b"198.51.100.23", self.path.read_bytes())        # nothing applied
        self.assertEqual(len(records(self.path)), 1)

    def test_a_confirmation_is_written_as_a_line(self):
        r = Retraction.from_event({k: v for k, v in retraction("erase").items() if k != "__type"})
        conf = dict(confirmation(r, "at-hub", 1).to_event(), __type="Event")
        self.feed([conf])
        self.assertEqual(records(self.path)[0]["retraction.confirmed_by"], "at-hub")

    def test_format_filename(self):
        pattern = str(self.dir / "{event[feed.name]}.txt")
        other = make_event("203.0.113.9", "x@example.com", **{"feed.name": "Second"})
        self.feed([TARGET, other, OTHER, retraction("erase")], file=pattern, format_filename=True)
        first, second = self.dir / "Originator.txt", self.dir / "Second.txt"
        self.assertNotIn(b"198.51.100.23", first.read_bytes())
        self.assertEqual(Retraction.from_event(records(first)[-1]).action, "erase")      # tombstone where held
        self.assertEqual(len(records(second)), 1)                                          # not held there
        self.feed([dict(OTHER, **{"feed.name": "../escape"})], file=pattern, format_filename=True,
                  allowed_error_count=1)
        self.assertLogMatches(r".*would leave the pattern's folder.*", "ERROR")
        self.assertFalse((self.dir.parent / "escape.txt").exists())

    def test_fsync_parameter_and_manager_empty_values(self):
        self.feed([TARGET], fsync=True)
        self.feed([OTHER], tlp_ceiling="", max_line_bytes="", encoding_errors_mode="", fsync="")
        self.assertEqual(len(records(self.path)), 2)

    def test_check(self):
        check = CrossBorderFileOutputBot.check
        self.assertIsNone(check({"file": str(self.path)}))
        self.assertIsNone(check({"file": str(self.path), "tlp_ceiling": "", "single_key": ""}))
        self.assertIsNone(check({"file": str(self.path), "hierarchical_output": False, "single_key": None}))
        for bad, text in (({}, "file"), ({"file": ""}, "file"), ({"file": "x", "single_key": "raw"}, "single_key"),
                          ({"file": "x", "tlp_ceiling": "PURPLE"}, "tlp_ceiling"),
                          ({"file": "x", "encoding_errors_mode": "bogus"}, "encoding_errors_mode"),
                          ({"file": "x", "max_line_bytes": "12"}, "max_line_bytes"),
                          ({"file": "x", "max_line_bytes": "many"}, "max_line_bytes")):
            found = check(bad)
            self.assertTrue(found and any(text in m for _, m in found), (bad, found))


def fake_consortium(root: Path, files: dict):
    """What demo.retraction.read_outputs reads of a consortium: members' runtimes and roots."""
    return SimpleNamespace(instances={name: SimpleNamespace(root=root, runtime={
        f"{name}-file": {"group": "Output", "module": "x", "parameters": {"file": str(path)}}})
        for name, path in files.items()})


def holding(directory: Path, path: Path) -> int:
    """demo.retraction's independent "still holding" count of the erase of TARGET in ``path``."""
    msg = Retraction.from_event({k: v for k, v in retraction("erase").items() if k != "__type"})
    issued = demo.Issued(msg, "de-hub", {"198.51.100.23", "jane.doe@example.org", "http://198.51.100.23/login"})
    outputs = demo.read_outputs(fake_consortium(directory, {"at-hub": path}))
    ids = {TARGET["provenance.event_uuid"]}, {TARGET["provenance.fingerprint"]}
    return sum(demo._holding(recs, issued, *ids) for recs in outputs.values())


class TestDemoReaderOnOurOutput(FileCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderFileOutputBot
        cls.sysconfig = {"file": "/tmp/xb-unused/events.txt"}

    def test_an_erase_leaves_no_value_behind(self):
        self.feed([TARGET, OTHER])
        self.assertEqual(holding(self.dir, self.path), 1)     # the reader sees the copy before
        self.feed([retraction("erase")])
        self.assertEqual(holding(self.dir, self.path), 0)


class TestDemoReaderOnTheStockOutput(FileCase, unittest.TestCase):
    """The stock file output keeps the erased values (the demo's "still holding: 3");
    ``intelmq-crossborder retraction purge`` applies its tombstone."""

    @classmethod
    def set_bot(cls):
        cls.bot_reference = FileOutputBot
        cls.sysconfig = {"file": "/tmp/xb-unused/events.txt"}

    def test_stock_output_still_holds_until_purged(self):
        self.feed([TARGET, OTHER, retraction("erase")])
        self.assertEqual(holding(self.dir, self.path), 1)
        from intelmq_crossborder.cli import main
        self.assertEqual(main(["retraction", "purge", str(self.path)]), 0)
        self.assertEqual(holding(self.dir, self.path), 0)
        recs = records(self.path)
        self.assertEqual([r.get("provenance.event_uuid") for r in recs], [OTHER["provenance.event_uuid"], None])
        self.assertNotIn(b"jane.doe", self.path.read_bytes())


if __name__ == "__main__":
    unittest.main()
