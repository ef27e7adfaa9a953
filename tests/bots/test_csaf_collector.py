"""BotTestCase tests of the cross-border CSAF collector against a local provider (intelmq_crossborder/testing/csaf_provider.py)."""
import base64
import json
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.testing.csaf_provider import Provider

CSAF_ADVISORIES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "csaf" / "advisories"

from intelmq_crossborder.bots.collectors.csaf.collector import CrossBorderCSAFCollectorBot


class TestCrossBorderCSAFCollectorBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderCSAFCollectorBot
        cls.sysconfig = {"csaf_source": "http://127.0.0.1:1/.well-known/csaf/provider-metadata.json",
                         "name": "Test CSAF", "provider": "Test provider"}

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.state = str(Path(self.tmp.name) / "state.json")
        self.provider = Provider(CSAF_ADVISORIES).__enter__()

    def tearDown(self):
        self.provider.__exit__()
        self.tmp.cleanup()
        super().tearDown()


    def run_collector(self, warnings=0, **params):
        parameters = {"csaf_source": self.provider.metadata_url, "state_file": self.state}
        parameters.update(params)
        self.run_bot(parameters=parameters, allowed_warning_count=warnings)
        return [json.loads(r) for r in self.get_output_queue()]

    def test_rolie_reports(self):
        reports = self.run_collector()
        self.assertEqual(len(reports), 5)
        urls = {r["feed.url"] for r in reports}
        self.assertIn(self.provider.base + "/.well-known/csaf/white/2022/bsi-2022-0001.json", urls)
        bsi = next(r for r in reports if r["feed.url"].endswith("bsi-2022-0001.json"))
        self.assertEqual(base64.b64decode(bsi["raw"]),
                         self.provider.files["/.well-known/csaf/white/2022/bsi-2022-0001.json"])
        self.assertEqual({r["sharing.tlp"] for r in reports}, {"CLEAR"})
        self.assertEqual({r["feed.name"] for r in reports}, {"Test CSAF"})
        # ROLIE preferred: the directory's changes.csv was never read
        self.assertNotIn("/.well-known/csaf/white/changes.csv", [p for p, _ in self.provider.requests])
        self.assertRegexpMatchesLog(r'Deviation in .*white-feed\.json: 10 link\(s\) use "ref" instead of "rel"')
        self.assertRegexpMatchesLog(r"timestamps without timezone, read as UTC")
        self.assertRegexpMatchesLog(r"using the 1 ROLIE feed\(s\)")

    def test_incremental_second_run_emits_nothing_then_the_changed_one(self):
        self.assertEqual(len(self.run_collector()), 5)
        self.assertEqual(self.run_collector(), [])
        self.provider.change("/.well-known/csaf/white/2022/bsi-2022-0001.json", "2024-09-01T00:00:00")
        reports = self.run_collector()
        self.assertEqual([r["feed.url"].rsplit("/", 1)[1] for r in reports], ["bsi-2022-0001.json"])
        state = json.loads(Path(self.state).read_text())
        self.assertEqual(len(next(iter(state["distributions"].values()))), 5)

    def test_wrong_hash_not_emitted_and_retried(self):
        path = "/.well-known/csaf/white/2019/icsa-19-344-03.json"
        good = self.provider.hashes[path]
        self.provider.hashes[path] = (good[0], "0" * 128)
        reports = self.run_collector(warnings=1)
        self.assertEqual(len(reports), 4)
        self.assertNotIn(self.provider.base + path, {r["feed.url"] for r in reports})
        self.assertRegexpMatchesLog(r"Advisory http://127\.0\.0\.1:\d+/\.well-known/csaf/white/2019/"
                                    r"icsa-19-344-03\.json not emitted: sha512 mismatch")
        self.provider.hashes[path] = good
        reports = self.run_collector()
        self.assertEqual([r["feed.url"] for r in reports], [self.provider.base + path])

    def test_missing_file_not_emitted(self):
        path = "/.well-known/csaf/white/2017/icsma-17-009-01a.json"
        self.provider.missing.add(path)
        reports = self.run_collector(warnings=1)
        self.assertEqual(len(reports), 4)
        self.assertRegexpMatchesLog(r"icsma-17-009-01a\.json not emitted: HTTP 404")

    def test_missing_hash_file(self):
        path = "/.well-known/csaf/white/2017/icsma-17-009-01a.json"
        self.provider.missing.update({path + ".sha256", path + ".sha512"})
        self.assertEqual(len(self.run_collector(warnings=1)), 4)
        self.assertRegexpMatchesLog(r"icsma-17-009-01a\.json not emitted: no hash file readable")
        Path(self.state).unlink()
        self.assertEqual(len(self.run_collector(require_hash=False)), 5)

    def test_directory_distribution(self):
        self.provider.with_rolie = False
        reports = self.run_collector()
        self.assertEqual(len(reports), 5)
        self.assertNotIn("sharing.tlp", reports[0])
        self.assertRegexpMatchesLog(r"changes\.csv: fields are not quoted")
        self.assertRegexpMatchesLog(r"changes\.csv: not sorted newest first, sorted")
        self.assertRegexpMatchesLog(r"5 path\(s\) repeat the directory path")

    def test_amber_feed_needs_auth_and_header_stays_secret(self):
        self.provider.feed_label = "AMBER"
        self.assertEqual(self.run_collector(warnings=1), [])
        self.assertRegexpMatchesLog(r"is TLP AMBER and needs authentication")
        secret = "Bearer s3cr3t-token-value"
        self.provider.required_header = ("Authorization", secret)
        reports = self.run_collector(auth_header_token=secret)
        self.assertEqual(len(reports), 5)
        self.assertEqual({r["sharing.tlp"] for r in reports}, {"AMBER"})
        self.assertNotIn("s3cr3t", self.loglines_buffer)

    def test_auth_header_only_sent_to_the_provider_host(self):
        """The feed lists its advisories on another host (localhost): it must not get the token."""
        self.provider.feed_label = "AMBER"
        self.provider.advisory_host = "localhost"
        secret = "Bearer s3cr3t-token-value"
        self.provider.required_header = ("Authorization", secret)
        reports = self.run_collector(auth_header_token=secret)
        self.assertEqual(len(reports), 5)
        elsewhere = [h for _, h in self.provider.requests if h.get("Host", "").startswith("localhost")]
        self.assertEqual(len(elsewhere), 10)        # 5 advisories + 5 hash files
        self.assertFalse(any("Authorization" in h for h in elsewhere))
        here = [h for _, h in self.provider.requests if h.get("Host", "").startswith("127.0.0.1")]
        self.assertTrue(here and all(h.get("Authorization") == secret for h in here))

    def test_domain_discovery(self):
        reports = self.run_collector(csaf_source=f"127.0.0.1:{self.provider.port}",
                                     discovery_scheme="http")
        self.assertEqual(len(reports), 5)

    def test_discovery_failure_is_logged(self):
        self.provider.missing.add("/.well-known/csaf/provider-metadata.json")
        self.run_bot(parameters={"csaf_source": self.provider.metadata_url, "state_file": self.state},
                     allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"CSAF discovery from .* failed: HTTP 404\.")

    def test_check(self):
        self.assertEqual(CrossBorderCSAFCollectorBot.check({})[0][0], "error")
        self.assertEqual(CrossBorderCSAFCollectorBot.check({"csaf_source": "x", "tlp_labels": ["BLUE"]})[0][0],
                         "error")
        self.assertIsNone(CrossBorderCSAFCollectorBot.check({"csaf_source": "example.org",
                                                             "tlp_labels": ["WHITE", "UNLABELED"]}))
        self.assertIn("http_retry_backoff", CrossBorderCSAFCollectorBot.check(
            {"csaf_source": "example.org", "http_retry_backoff": -1})[0][1])

    def test_manager_empty_optional_parameters_mean_the_defaults(self):
        # IntelMQ Manager saves an untouched optional field as '': every optional parameter
        empty = {name: "" for name in (
            "discovery_scheme", "tlp_labels", "require_hash", "verify_signatures", "openpgp_key_files",
            "use_provider_keys", "gpg_binary", "state_file", "max_age_days", "http_timeout_sec",
            "http_timeout_max_tries", "http_retry_backoff", "http_header", "auth_header_name",
            "auth_header_token", "auth_hosts", "ssl_client_certificate", "http_verify_cert", "rate_limit")}
        self.assertIsNone(CrossBorderCSAFCollectorBot.check({"csaf_source": "example.org", **empty}))
        state = Path(self.tmp.name) / "var-state"
        with mock.patch("intelmq_crossborder.bots.collectors.csaf.collector.VAR_STATE_PATH", str(state)):
            self.run_bot(parameters={"csaf_source": self.provider.metadata_url, **empty})
        self.assertEqual(len(self.get_output_queue()), 5)
        self.assertTrue((state / f"{self.bot_id}.csaf-state.json").exists())
        bot = self.bot
        self.assertEqual((bot.rate_limit, bot.http_timeout_sec, bot.http_timeout_max_tries, bot.http_retry_backoff,
                          bot.require_hash, bot.verify_signatures, bot.http_verify_cert),
                         (86400, 30, 3, 2.0, True, False, True))
        self.assertEqual(bot.tlp_labels, ["WHITE", "GREEN", "AMBER", "RED", "UNLABELED"])

    def test_check_names_a_bad_parameter_type(self):
        for params, name in (({"require_hash": "no"}, "require_hash"), ({"max_age_days": "ten"}, "max_age_days"),
                             ({"http_header": ["X-Key: 1"]}, "http_header")):
            result = CrossBorderCSAFCollectorBot.check({"csaf_source": "example.org", **params})
            self.assertEqual(result[0][0], "error")
            self.assertIn(f"Parameter {name}", result[0][1])

    def test_server_errors_retried_with_backoff_then_collected(self):
        # the provider answers 503 twice for one advisory, then serves it; the session's own
        # (silent, immediate) transport retries are off, so every attempt is the Fetcher's
        path = "/.well-known/csaf/white/2022/bsi-2022-0001.json"
        answer = self.provider.answer
        failures = []

        def flaky(p):
            if p == path and len(failures) < 2:
                failures.append(p)
                return 503, b"busy"
            return answer(p)
        self.provider.answer = flaky
        reports = self.run_collector(warnings=2, http_timeout_max_tries=3, http_retry_backoff=0.01)
        self.assertEqual(len(reports), 5)
        self.assertEqual([p for p, _ in self.provider.requests].count(path), 3)
        self.assertRegexpMatchesLog(r"GET http://127\.0\.0\.1:\d+/\.well-known/csaf/white/2022/bsi-2022-0001\.json: "
                                    r"HTTP 503; retry 2 of 2 in 0\.02 s\.")


if __name__ == "__main__":
    unittest.main()
