"""Fuzz the sharing-agreement loader (YAML -> schema -> Agreement) with damaged real agreements.

Every file either loads into an Agreement that :func:`decide` can use, or raises
AgreementError naming the file (and, where there is one, the field).  10,000 cases by
default (XB_FUZZ_EXAMPLES scales it).
"""
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st

from tests import fuzzing
from intelmq_crossborder.policy.agreements import AgreementError, load_agreement
from intelmq_crossborder.policy.decide import decide
from intelmq_crossborder.runtime.instance import PIPELINES_DIR

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)

SEED_FILES = sorted((PIPELINES_DIR / "agreements").glob("*.yaml"))
SEED_TEXT = [p.read_bytes() for p in SEED_FILES]
SEED_DOCS = [yaml.safe_load(t) for t in SEED_TEXT]
#: PyYAML is pure Python here and slow on deep nesting (2,000 levels: 1.7 s to fail): keep the
#: oversized values at 10k characters / 200-300 levels so 10,000 cases fit in CI time (the JSON
#: parsers get 300k / 200,000).  The regression fixtures keep 20,000- and 100,000-level files.
VALUES = fuzzing.odd_values_up_to(huge=10_000, depth=200)
EVENT = {"classification.taxonomy": "malicious-code", "classification.type": "infected-system",
         "source.ip": "198.51.100.7", "source.fqdn": "bad.example", "sharing.tlp": "GREEN", "sharing.pap": "GREEN",
         "provenance.originator": "cert-x", "provenance.origin_country": "DE", "feed.name": "f"}
KEY = b"fuzz-test-hmac-key"


def load(data: bytes, workdir: Path) -> None:
    path = workdir / "fuzz-agreement.yaml"
    path.write_bytes(data)
    with fuzzing.time_guard():
        try:
            agreement = load_agreement(path)
        except AgreementError as exc:
            assert str(path) in str(exc), f"error does not name the file: {exc}"
            return
        decision = decide(EVENT, agreement, hmac_key=KEY)
        assert isinstance(decision.allowed, bool) and decision.reasons


def _record(test_name, data, workdir):
    try:
        load(data, workdir)
    except BaseException:
        fuzzing.save_crasher("agreement", data, test_name, ".yaml")
        raise


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-agreement")


def _yaml(doc) -> bytes:
    try:
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (RecursionError, yaml.YAMLError):
        return b"[" * 5000


@fuzzing.fuzz_settings(0.7)
@given(fuzzing.mutated_json(SEED_DOCS, values=VALUES))
def test_fuzz_agreement_structural(workdir, doc):
    _record("agreement_structural", _yaml(doc), workdir)


@fuzzing.fuzz_settings(0.3)
@given(fuzzing.mutated_bytes(SEED_TEXT, max_depth=300))
def test_fuzz_agreement_bytes(workdir, data):
    _record("agreement_bytes", data, workdir)


#: (field, how to put a value with white space into an agreement) for every id, code and field name
WHITESPACE_TARGETS = {
    "recipient": lambda doc, v: doc.__setitem__("recipient", doc["recipient"] + v),
    "hub_id": lambda doc, v: doc.__setitem__("hub_id", "de-hub" + v),
    "country": lambda doc, v: doc.__setitem__("country", doc["country"] + v),
    "origin_countries[0]": lambda doc, v: doc.__setitem__("origin_countries", ["AT" + v]),
    "remove_fields[0]": lambda doc, v: doc.__setitem__("remove_fields", ["extra.contact" + v]),
    "pseudonymise_fields[0]": lambda doc, v: doc.__setitem__("pseudonymise_fields", ["source.ip" + v]),
    "originator_fields[0]": lambda doc, v: doc.__setitem__("originator_fields", ["feed.name" + v]),
}


@fuzzing.fuzz_settings(0.05)
@given(st.sampled_from(SEED_DOCS), st.sampled_from(sorted(WHITESPACE_TARGETS)),
       st.sampled_from(["\n", " ", "\t", "\r\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2028", "\n\n"]),
       st.booleans())
def test_fuzz_agreement_white_space_is_refused(workdir, seed, target, space, leading):
    doc = {k: v for k, v in seed.items() if k not in ("remove_fields", "pseudonymise_fields")}
    WHITESPACE_TARGETS[target](doc, space)
    if leading:
        key = target.split("[")[0]
        doc[key] = [space + doc[key][0].rstrip()] if isinstance(doc[key], list) else space + doc[key].rstrip()
    path = workdir / "white-space.yaml"
    path.write_bytes(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))
    with pytest.raises(AgreementError) as info:
        load_agreement(path)
    assert info.value.field == target, str(info.value)


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "agreement").glob("*")), ids=lambda p: p.name)
def test_agreement_crasher_regressions(workdir, path):
    load(path.read_bytes(), workdir)
