"""Unit tests of intelmq_crossborder.formats.csaf.distribution on the real distribution samples."""
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from intelmq_crossborder.testing.csaf_provider import Provider

CSAF_ADVISORIES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "csaf" / "advisories"
from intelmq_crossborder.formats.csaf import document as csaf, distribution as dist
FIX = Path(__file__).resolve().parent / "fixtures" / "csaf" / "distribution"
LOG = logging.getLogger("csaf-test")


class DictFetcher(dist.Fetcher):
    """Answers from a dict instead of the network."""

    def __init__(self, pages):
        super().__init__(session=None)
        self.pages = pages

    def get(self, url):
        if url not in self.pages:
            raise dist.FetchError(url, "HTTP 404", 404)
        return self.pages[url]


def test_real_cisa_rolie_feed_with_ref_instead_of_rel(caplog):
    feed = json.loads((FIX / "cisa-it-white" / "cisa-csaf-it-feed-tlp-white.json").read_bytes())
    with caplog.at_level(logging.INFO):
        entries = dist.rolie_entries("https://example.org/feed.json", feed, LOG, "WHITE")
    assert len(entries) == 4
    va = next(e for e in entries if e.url.endswith("va-24-201-01.json"))
    assert va.hash_urls == [("sha512", va.url + ".sha512")]
    assert va.signature_url == va.url + ".asc"
    assert va.updated == "2024-09-18T16:00:00+00:00"
    assert 'link(s) use "ref" instead of "rel"' in caplog.text


def test_real_cisa_changes_csv_unquoted_repo_relative(caplog):
    text = (FIX / "cisa-it-white" / "changes.csv").read_text()
    with caplog.at_level(logging.INFO):
        rows = dist.parse_changes_csv(text, "cisa changes.csv", LOG)
    assert rows[0] == ("csaf_files/IT/white/2024/va-24-254-02.json", "2024-10-03T16:03:00+00:00")
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    assert "fields are not quoted" in caplog.text
    pages = {"https://raw.example/csaf_files/IT/white/changes.csv": text.encode()}
    entries = dist.directory_entries("https://raw.example/csaf_files/IT/white/", DictFetcher(pages), LOG)
    assert entries[0].url == "https://raw.example/csaf_files/IT/white/2024/va-24-254-02.json"


def test_real_cpansa_changes_csv_without_timezone(caplog):
    with caplog.at_level(logging.INFO):
        rows = dist.parse_changes_csv((FIX / "cpansa-changes.csv").read_text(), "cpansa", LOG)
    assert rows[0][1].endswith("+00:00")
    assert "timestamps without timezone, read as UTC" in caplog.text
    assert "not quoted" not in caplog.text


def test_real_hash_sidecar_matches_real_advisory():
    body = (FIX.parent / "advisories" / "va-24-201-01.json").read_bytes()
    sidecar = (FIX / "cisa-it-white" / "2024" / "va-24-201-01.json.sha512").read_text()
    assert dist.parse_hash_file(sidecar) == hashlib.sha512(body).hexdigest()
    entry = dist.Entry("https://x/va.json", None, [("sha512", "https://x/va.json.sha512")])
    assert dist.verify_hash(entry, body, DictFetcher({"https://x/va.json.sha512": sidecar.encode()})) == "sha512"
    with pytest.raises(dist.VerificationError, match="sha512 mismatch"):
        dist.verify_hash(entry, body + b" ", DictFetcher({"https://x/va.json.sha512": sidecar.encode()}))


def test_aggregator_discovery_with_real_examples():
    agg = (FIX / "example-01-aggregator.json").read_bytes()
    meta = (FIX / "example-01-provider-metadata.json").read_bytes()
    pages = {"https://aggregator.example/aggregator.json": agg,
             "https://www.example.com/.well-known/csaf/provider-metadata.json": meta}
    found = dist.discover("https://aggregator.example/aggregator.json", DictFetcher(pages), LOG)
    assert [url for url, _ in found] == ["https://www.example.com/.well-known/csaf/provider-metadata.json"]
    dists = dist.distributions(found[0][0], found[0][1], LOG)
    assert dists == [dist.Distribution("rolie", "https://www.example.com/.well-known/csaf/feed-tlp-white.json",
                                       "WHITE")]
    assert csaf.validate(json.loads(agg), "aggregator") == ([], 0)
    assert csaf.validate(json.loads(meta), "provider") == ([], 0)


def test_domain_discovery_order_security_txt():
    meta = (FIX / "example-01-provider-metadata.json").read_bytes()
    pages = {"https://example.com/.well-known/security.txt":
             b"Contact: mailto:psirt@example.com\nCSAF: https://psirt.example.com/pm.json\n",
             "https://psirt.example.com/pm.json": meta}
    assert dist.discover("example.com", DictFetcher(pages), LOG)[0][0] == "https://psirt.example.com/pm.json"
    pages = {"https://csaf.data.security.example.com/.well-known/csaf/provider-metadata.json": meta}
    assert dist.discover("example.com", DictFetcher(pages), LOG)[0][0].startswith("https://csaf.data.security.")
    with pytest.raises(dist.FetchError, match="no provider-metadata.json found"):
        dist.discover("example.com", DictFetcher({}), LOG)


def test_interrupted_run_resumes(tmp_path):
    """A run that dies after two advisories: the next run delivers exactly the other three."""
    state_file = str(tmp_path / "state.json")
    with Provider(CSAF_ADVISORIES) as provider:
        fetcher = dist.Fetcher(requests.Session(), timeout=5)
        delivered = []

        def dying_emit(entry, body, level):
            if len(delivered) == 2:
                raise KeyboardInterrupt("process killed")
            delivered.append(entry.url)

        with pytest.raises(KeyboardInterrupt):
            dist.collect(provider.metadata_url, fetcher, dist.RunState(state_file), dying_emit, LOG)
        assert len(delivered) == 2
        second = []
        stats = dist.collect(provider.metadata_url, fetcher, dist.RunState(state_file),
                             lambda e, b, lvl: second.append(e.url), LOG)
        assert stats.delivered == 3
        assert set(second).isdisjoint(delivered)
        assert len(set(second) | set(delivered)) == 5


def test_connection_dropped_mid_download_is_retried_next_run(tmp_path):
    with Provider(CSAF_ADVISORIES) as provider:
        path = "/.well-known/csaf/white/2022/bsi-2022-0001.json"
        real = provider.answer

        def truncated(p):
            status, body = real(p)
            return (status, body[:100]) if p == path else (status, body)
        provider.answer = truncated
        fetcher = dist.Fetcher(requests.Session(), timeout=5)
        state = dist.RunState(str(tmp_path / "s.json"))
        got = []
        stats = dist.collect(provider.metadata_url, fetcher, state, lambda e, b, lvl: got.append(e.url), LOG)
        assert (stats.delivered, stats.failed) == (4, 1)
        provider.answer = real
        stats = dist.collect(provider.metadata_url, fetcher, dist.RunState(str(tmp_path / "s.json")),
                             lambda e, b, lvl: got.append(e.url), LOG)
        assert (stats.delivered, stats.failed) == (1, 0)
        assert got[-1].endswith(path)


@pytest.fixture(scope="module")
def gpg_key():
    if not shutil.which("gpg"):
        pytest.skip("gpg not installed")
    home = tempfile.mkdtemp(prefix="csaf-gpg-test-")
    subprocess.run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key",
                    "CSAF Test Provider <psirt@example.org>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)
    public = subprocess.run(["gpg", "--homedir", home, "--armor", "--export"], check=True,
                            capture_output=True).stdout
    fpr = [line.split(":")[9] for line in subprocess.run(
        ["gpg", "--homedir", home, "--with-colons", "--list-keys"], check=True, capture_output=True,
        text=True).stdout.splitlines() if line.startswith("fpr:")][0]
    yield home, public, fpr
    shutil.rmtree(home, ignore_errors=True)


def test_openpgp_verify_good_bad_and_foreign(gpg_key):
    home, public, fpr = gpg_key
    signer = dist.OpenPGPVerifier(home=home)
    body = (FIX.parent / "advisories" / "bsi-2022-0001.json").read_bytes()
    signature = signer.sign(body)
    verifier = dist.OpenPGPVerifier()
    try:
        with pytest.raises(dist.VerificationError, match="do not match the listed"):
            verifier.import_key(public, "0" * 40)
        assert verifier.import_key(public, fpr) == [fpr]
        assert verifier.verify("u", body, signature) == fpr
        with pytest.raises(dist.VerificationError, match="not valid"):
            verifier.verify("u", body + b"\n", signature)
        # the real CISA signature is by a key the provider did not list here
        cisa_sig = (FIX / "cisa-it-white" / "2024" / "va-24-201-01.json.asc").read_bytes()
        cisa_doc = (FIX.parent / "advisories" / "va-24-201-01.json").read_bytes()
        with pytest.raises(dist.VerificationError):
            verifier.verify("va-24-201-01.json", cisa_doc, cisa_sig)
    finally:
        verifier.close()


def test_collect_with_signatures(tmp_path, gpg_key):
    home, public, fpr = gpg_key
    signer = dist.OpenPGPVerifier(home=home)
    with Provider(CSAF_ADVISORIES) as provider:
        real = provider.answer
        tampered = "/.well-known/csaf/white/2017/icsma-17-009-01a.json"

        def with_signatures(p):
            if p.endswith(".asc") and p[:-4] in provider.files:
                body = provider.files[p[:-4]]
                return 200, signer.sign(body + (b"x" if p[:-4] == tampered else b""))
            if p == "/keys/provider.asc":
                return 200, public
            if p == "/.well-known/csaf/provider-metadata.json":
                meta = provider.metadata()
                meta["public_openpgp_keys"] = [{"fingerprint": fpr, "url": provider.base + "/keys/provider.asc"}]
                return 200, json.dumps(meta).encode()
            return real(p)
        provider.answer = with_signatures
        verifier = dist.OpenPGPVerifier()
        try:
            got = []
            stats = dist.collect(provider.metadata_url, dist.Fetcher(requests.Session()),
                                 dist.RunState(None), lambda e, b, lvl: got.append(e.url), LOG,
                                 dist.CollectOptions(verifier=verifier))
        finally:
            verifier.close()
        assert (stats.delivered, stats.failed) == (4, 1)
        assert not any(u.endswith(tampered) for u in got)


def test_max_age_days_and_feed_labels():
    assert dist.older_than("2000-01-01T00:00:00+00:00", 30)
    assert not dist.older_than("2000-01-01T00:00:00+00:00", 0)
    assert not dist.older_than(None, 30)
    assert dist.feed_level("UNLABELED") is None
    assert dist.feed_level("WHITE").label == "CLEAR"
    assert dist.auth_hosts_for("example.com") == {"example.com", "csaf.data.security.example.com"}
    assert dist.auth_hosts_for("https://psirt.example.com:8443/x.json") == {"psirt.example.com"}


def test_first_run_limited_by_age(tmp_path):
    with Provider(CSAF_ADVISORIES) as provider:
        got = []
        stats = dist.collect(provider.metadata_url, dist.Fetcher(requests.Session()), dist.RunState(None),
                             lambda e, b, lvl: got.append(e), LOG, dist.CollectOptions(max_age_days=1))
        assert (stats.listed, stats.delivered) == (5, 0)      # the served entries are from 2024


def test_hostile_distribution_documents_are_refused_or_skipped_not_crashed(tmp_path):
    """Duplicate keys and huge numbers in a provider's JSON are FetchErrors naming the URL; lists
    where objects belong (and the reverse) are skipped; a corrupt state file names itself."""
    url = "https://provider.example/.well-known/csaf/provider-metadata.json"
    fetcher = DictFetcher({url: b'{"distributions": [], "distributions": []}'})
    with pytest.raises(dist.FetchError, match="duplicate key 'distributions'"):
        fetcher.get_json(url)
    fetcher.pages[url] = b'{"x": 1' + b"0" * 200 + b"}"
    with pytest.raises(dist.FetchError, match="a number of 201 characters"):
        fetcher.get_json(url)
    assert dist.distributions(url, [], LOG) == []
    assert dist.distributions(url, {"distributions": {"rolie": []}}, LOG) == []
    assert dist.distributions(url, {"distributions": [[], {"rolie": {"feeds": [{"url": ["x"]}, 5]}}]}, LOG) == []
    assert dist.rolie_entries(url, {"feed": {"entry": [[], {"link": {"rel": "self"}}, 7]}}, LOG) == []
    assert dist.rolie_entries(url, [], LOG) == []
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "version": 1}')
    with pytest.raises(ValueError, match=r"state\.json: .*duplicate key 'version'"):
        dist.RunState(str(state))
    state.write_text('{"version": 1, "distributions": []}')
    assert dist.RunState(str(state)).data == {"version": 1, "distributions": {}}, "a wrong shape starts over"
