"""Deeply nested input (found by the fuzz tests) is a clear, documented error, not a RecursionError."""
import json

import pytest

from tests.hostile import assert_clean, run_cli
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.policy.agreements import AgreementError, load_agreement
def test_csaf_deep_nesting_is_a_csaf_error():
    with pytest.raises(csaf.CSAFError, match="nested too deeply") as info:
        csaf.parse_document(b"[" * 100_000, source="deep.json")
    assert "deep.json" in str(info.value)


def test_manifest_deep_nesting_is_malformed():
    with pytest.raises(bundle.BundleError, match="nested too deeply") as info:
        bundle.Manifest.from_bytes(b"[" * 60_000)
    assert info.value.reason == "malformed"


def test_trust_store_deep_nesting(tmp_path):
    path = tmp_path / "trust.yaml"
    path.write_text("[" * 100_000)
    with pytest.raises(bundle.BundleError, match="nested too deeply") as info:
        bundle.TrustStore.from_file(path)
    assert info.value.reason == "trust-store" and str(path) in str(info.value)


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 20_000 + "a"])
def test_agreement_deep_nesting(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(AgreementError, match="nested too deeply") as info:
        load_agreement(path)
    assert "deep.yaml" in str(info.value)


# --- every command: 100,000 levels of nesting are one clear error with the documented status -------
DEEP_JSON = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_YAML = b"[" * 100_000
AGREEMENT = b"recipient: isac\nname: I\nkind: isac\ncountry: EU\nrelation: community\nmax_tlp: GREEN\n"


def _setup(tmp_path, what):
    """(argv, exit statuses docs/cli.md allows, the file that must be named)."""
    deep = tmp_path / ("deep.yaml" if what in ("check", "agreements", "trust") else "deep.json")
    deep.write_bytes(DEEP_YAML if deep.suffix == ".yaml" else DEEP_JSON)
    agreements = tmp_path / "agreements"
    agreements.mkdir()
    (agreements / "isac.yaml").write_bytes(AGREEMENT)
    events = tmp_path / "events.jsonl"
    events.write_bytes(json.dumps({"classification.type": "scanner"}).encode() + b"\n")
    bundle = tmp_path / "x.xbundle"
    bundle.write_bytes(b"")
    db = tmp_path / "store.sqlite"
    if what == "agreements":
        (agreements / "deep.yaml").write_bytes(DEEP_YAML)
        deep = agreements / "deep.yaml"
    return {
        "convert-csaf": (["convert", "csaf", deep], {1}),
        "convert-misp": (["convert", "misp", deep], {1}),
        "harmonization": (["harmonization", "check", deep], {1, 2}),
        "check": (["check", deep], {1, 2}),
        "agreements": (["policy", "check", "--agreements", agreements, "--events", events], {2}),
        "events": (["policy", "check", "--agreements", agreements, "--events", deep], {1}),
        "events-strict": (["policy", "check", "--agreements", agreements, "--events", deep, "--strict"], {2}),
        "trust": (["bundle", "verify", "--trust", deep, bundle], {2}),
        "record": (["stats", "record", deep, "--db", db], {1}),
        "dumps": (["stats", "import-dumps", deep, "--db", db], {1}),
    }[what] + (deep,)


@pytest.mark.parametrize("what", ["convert-csaf", "convert-misp", "harmonization", "check", "agreements", "events",
                                  "events-strict", "trust", "record", "dumps"])
def test_every_command_deep_nesting(tmp_path, what):
    argv, codes, deep = _setup(tmp_path, what)
    result = run_cli(argv)
    assert_clean(result, codes)
    assert deep.name in result.err, result.show()
