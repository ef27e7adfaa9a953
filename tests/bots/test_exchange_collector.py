"""BotTestCase tests of the cross-border exchange collector."""
import atexit
import base64
import json
import shutil
import tempfile
import unittest
import unittest.mock as mock
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from tests.exchange_helpers import (ExchangeServer, events, make_pki, read_members, replace_data_lines, rewrite,
                              write_members, write_trust)

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.bots.collectors.exchange.collector import CrossBorderExchangeCollectorBot

KEYS = {"de-hub": b.generate_private_key(), "at-hub": b.generate_private_key()}
CONF_DIR = Path(tempfile.mkdtemp(prefix="xb-collector-conf-"))
atexit.register(shutil.rmtree, CONF_DIR, True)
write_trust(CONF_DIR / "trust.yaml", KEYS)


class TestCrossBorderExchangeCollectorBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeCollectorBot
        cls.sysconfig = {"hub_id": "fr-hub", "trust_store": str(CONF_DIR / "trust.yaml"),
                         "inbox_dir": str(CONF_DIR / "unused-inbox"), "events_per_report": 4}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-collector-"))
        self.inbox = self.dir / "inbox"
        self.inbox.mkdir()
        self.params = {"inbox_dir": str(self.inbox), "state_dir": str(self.dir / "state")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def send(self, seq, n, start=0, sender="de-hub", recipient="fr-hub"):
        return b.write_bundle(self.inbox, sender, recipient, seq, KEYS[sender], events(n, start, hub=sender))

    def reports(self):
        return self.output_events()

    def lines(self):
        out = []
        for report in self.reports():
            out.extend(json.loads(l) for l in base64.b64decode(report["raw"]).decode().splitlines())
        return out

    def test_import_in_chunks(self):
        path = self.send(1, 10)
        self.run_bot(parameters=self.params)
        reports = self.reports()
        assert len(reports) == 3
        assert [r["extra.exchange_first_event"] for r in reports] == [0, 4, 8]
        assert {r["extra.exchange_sender"] for r in reports} == {"de-hub"}
        assert {r["extra.exchange_sender_country"] for r in reports} == {"DE"}
        assert all(r["feed.url"].startswith("file://") for r in reports)
        assert self.lines() == events(10)
        assert not path.exists() and (self.dir / "state" / "archive" / path.name).exists()

    def test_second_run_adds_nothing(self):
        path = self.send(1, 3)
        self.run_bot(parameters=self.params)
        assert len(self.lines()) == 3
        shutil.copy(self.dir / "state" / "archive" / path.name, self.inbox / path.name)
        self.run_bot(parameters=self.params)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog("was already imported; nothing added")

    def test_tampered_wrong_recipient_replay_rejected_and_quarantined(self):
        good = self.send(1, 2)
        tampered = self.send(2, 2, start=10)
        rewrite(tampered, data=replace_data_lines(lambda ls: ls + [b'{"source.ip": "203.0.113.66"}']))
        foreign = self.send(1, 2, recipient="it-hub")
        self.run_bot(parameters=self.params, allowed_error_count=2)
        assert self.lines() == events(2)
        quarantine = self.dir / "state" / "quarantine"
        reasons = {json.loads(p.read_text())["file"]: json.loads(p.read_text())["reason"]
                   for p in quarantine.glob("*.reason.json")}
        assert reasons == {tampered.name: "hash-mismatch", foreign.name: "wrong-recipient"}
        self.assertRegexpMatchesLog(r"Rejected bundle .*\(hash-mismatch\).*Moved to quarantine")
        replay = self.send(1, 2, start=20)
        self.run_bot(parameters=self.params, allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"\(replay\): .*sequence 1 from de-hub is not newer")
        assert (quarantine / replay.name).exists() and not list(self.inbox.iterdir())
        assert good.name in {p.name for p in (self.dir / "state" / "archive").iterdir()}

    def test_revoked_key_takes_effect_without_restart(self):
        self.send(1, 1)
        revoked_trust = self.dir / "trust.yaml"
        write_trust(revoked_trust, KEYS, revoked={b.key_id_of(KEYS["de-hub"])})
        self.run_bot(parameters={**self.params, "trust_store": str(revoked_trust)}, allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"\(revoked-key\): .*revoked \(key compromised\)")

    def test_crash_in_the_middle_resumes_without_loss_or_duplicates(self):
        self.send(1, 10)
        real_send = CrossBorderExchangeCollectorBot.send_message
        calls = []

        def dying_send(bot, *messages, **kw):
            if len(calls) == 2:
                raise RuntimeError("pipeline went away")
            calls.append(1)
            return real_send(bot, *messages, **kw)

        with mock.patch.object(CrossBorderExchangeCollectorBot, "send_message", dying_send):
            self.run_bot(parameters=self.params, allowed_error_count=1)
        first = self.lines()
        assert first == events(8)
        self.run_bot(parameters=self.params)
        self.assertRegexpMatchesLog("Resuming import of .* at event 8 of 10")
        assert self.lines() == events(10)[8:]

    def test_two_senders(self):
        self.send(1, 2, sender="de-hub")
        self.send(1, 2, sender="at-hub")
        self.run_bot(parameters=self.params)
        assert sorted(e["provenance.origin_hub"] for e in self.lines()) == ["at-hub", "at-hub", "de-hub", "de-hub"]

    def test_pull_over_https_with_mutual_tls(self):
        pki = make_pki(self.dir)
        served = self.dir / "served"
        served.mkdir()
        b.write_bundle(served, "de-hub", "fr-hub", 1, KEYS["de-hub"], events(3))
        with ExchangeServer(pki, served) as server:
            params = {**self.params, "pull_url": server.url, "client_cert": pki["client_cert"],
                      "client_key": pki["client_key"], "ca_bundle": pki["ca"]}
            self.run_bot(parameters=params)
            assert self.lines() == events(3)
            self.run_bot(parameters=params)
            self.assertOutputQueueLen(0)

    def test_check(self):
        check = CrossBorderExchangeCollectorBot.check
        assert check(self.sysconfig) is None
        bad = check({**self.sysconfig, "trust_store": str(self.dir / "missing.yaml"), "hub_id": "FR"})
        assert len(bad) == 2 and "missing.yaml" in bad[1][1]

    def test_manager_style_empty_optional_parameters(self):
        """IntelMQ Manager saves every untouched optional parameter as ''."""
        empty = {name: "" for name in CrossBorderExchangeCollectorBot.OPTIONAL}
        assert CrossBorderExchangeCollectorBot.check({**self.sysconfig, **empty}) is None
        path = self.send(1, 5)
        self.run_bot(parameters={**empty, "inbox_dir": str(self.inbox), "state_dir": str(self.dir / "state")})
        reports = self.reports()
        assert len(reports) == 1 and self.lines() == events(5)      # events_per_report '' is 1000, not 4
        assert (self.dir / "state" / "archive" / path.name).exists(), "keep_imported '' is the default (true)"

    def test_hostile_bundles_quarantined_with_reason_good_one_imported(self):
        """Hardened parsing keeps the collector's contract: a bad bundle goes to quarantine with a
        clear reason (duplicate keys in a signed manifest, a line that is not UTF-8, a bundle to
        itself), the good one is imported."""
        import gzip
        import hashlib

        good = self.send(1, 2)

        def resealed(seq, fix_manifest=None, data=None):
            path = self.send(seq, 1, start=100 + seq)
            members = dict(read_members(path))
            manifest = json.loads(members["manifest.json"])
            if data is not None:
                members["data.jsonl.gz"] = gzip.compress(data, mtime=0)
                manifest["data"].update(sha256=hashlib.sha256(members["data.jsonl.gz"]).hexdigest(),
                                        size=len(members["data.jsonl.gz"]))
            raw = json.dumps(manifest, sort_keys=True).encode()
            if fix_manifest:
                raw = fix_manifest(raw)
            sig = {"signatures": [{"algorithm": "ed25519", "key_id": b.key_id_of(KEYS["de-hub"]),
                                   "value": base64.b64encode(KEYS["de-hub"].sign(raw)).decode()}]}
            write_members(path, [("manifest.json", raw), ("signatures.json", json.dumps(sig).encode()),
                                 ("data.jsonl.gz", members["data.jsonl.gz"])])
            return path

        duplicate = resealed(2, lambda raw: raw.replace(b'"recipient": "fr-hub"',
                                                        b'"recipient": "fr-hub", "recipient": "at-hub"'))
        latin = resealed(2, data=b'{"source.ip": "198.51.100.1", "comment": "caf\xe9"}\n')
        self.run_bot(parameters=self.params, allowed_error_count=2)
        assert self.lines() == events(2)
        quarantine = self.dir / "state" / "quarantine"
        reasons = {p.name: json.loads(p.read_text()) for p in quarantine.glob("*.reason.json")}
        assert {r["file"]: r["reason"] for r in reasons.values()} == {duplicate.name: "malformed",
                                                                     latin.name: "malformed"}
        assert "duplicate key 'recipient'" in reasons[duplicate.name + ".reason.json"]["message"]
        assert "event line 1 is not UTF-8" in reasons[latin.name + ".reason.json"]["message"]
        assert good.name in {p.name for p in (self.dir / "state" / "archive").iterdir()}

    def test_check_refuses_whitespace_and_wrong_types(self):
        check = CrossBorderExchangeCollectorBot.check
        for params, needle in (({"hub_id": "fr-hub\n"}, "hub_id"), ({"trust_store": ["a.yaml"]}, "trust_store"),
                               ({"inbox_dir": {}}, "inbox_dir"), ({"events_per_report": True}, "events_per_report"),
                               ({"pull_url": ["https://x"]}, "pull_url")):
            problems = check({**self.sysconfig, **params})
            assert problems and any(needle in p[1] for p in problems), (params, problems)
        trust = self.dir / "bomb.yaml"
        trust.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join(['*a' if i == 1 else '*a%d' % (i - 1)] * 10)}]\n" for i in range(1, 10))
            + "version: 1\npeers: *a9\n")
        problems = check({**self.sysconfig, "trust_store": str(trust)})
        assert problems and "bomb.yaml" in problems[0][1] and "billion laughs" in problems[0][1]

    def test_corrupt_import_state_is_a_configuration_error(self):
        """A state file that is not the importer's (a list, wrong types) stops the bot with a message
        naming the file; it is never silently replaced or half-used."""
        from intelmq.lib.exceptions import ConfigurationError

        state = self.dir / "state"
        state.mkdir()
        (state / "import-state.json").write_text('{"peers": {"de-hub": {"last_sequence": "1"}}}')
        self.send(1, 1)
        self.prepare_bot(parameters=self.params)
        with self.assertRaises(ConfigurationError) as info:
            self.bot.process()
        assert "import-state.json" in str(info.exception) and "peers.de-hub.last_sequence" in str(info.exception)
        assert len(list(self.inbox.iterdir())) == 1
