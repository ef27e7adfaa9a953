"""Deeply nested input (found by the fuzz tests) is a clear, documented error, not a RecursionError."""
import pytest

from intelmq_crossborder import bundle, csaf, policy


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
    with pytest.raises(policy.AgreementError, match="nested too deeply") as info:
        policy.load_agreement(path)
    assert "deep.yaml" in str(info.value)
