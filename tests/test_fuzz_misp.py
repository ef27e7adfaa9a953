"""Fuzz the MISP parser (JSON -> load_events -> Converter rows -> IntelMQ event) with damaged MISP events.

What the MISP parser bot does per report, in process: every input either becomes
harmonization-valid IntelMQ events or raises MISPFormatError naming the report (and the
field where there is one). 10,000 cases by default (XB_FUZZ_EXAMPLES scales it).
"""
import json
from pathlib import Path

import pytest
from hypothesis import given
from intelmq.lib.exceptions import InvalidValue
from intelmq.lib.message import Event

from tests import fuzzing
from intelmq_crossborder import harmonization
from intelmq_crossborder.formats.misp import convert as misp

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)
FIX = Path(__file__).parent / "fixtures" / "misp"
SEED_FILES = [FIX / "misp-core" / "feed" / "56bf399d-c46c-4fdb-a9cf-d9bb02de0b81.json",
              FIX / "ours" / "sighting-attribute-tlp-types.json"]
SEED_BYTES = [p.read_bytes() for p in SEED_FILES]
SEED_DOCS = [json.loads(b) for b in SEED_BYTES]
HARM = harmonization.merged_harmonization()
WHERE = "report of feed fuzz-misp"


def run_parser(data: bytes) -> None:
    with fuzzing.time_guard():
        converter = misp.Converter()
        converter.where = WHERE
        try:
            for event in misp.loads(data, WHERE):            # what the bot reads: hostile JSON refused
                for row in converter.rows(event):
                    fields = converter.convert(row)
                    row.raw()
                    if fields is None:
                        continue
                    ev = Event(harmonization=HARM)
                    for key, value in fields.items():
                        try:
                            ev.add(key, value, overwrite=True)
                        except InvalidValue:                  # the bot turns this into MISPFormatError
                            pass
        except misp.MISPFormatError as exc:
            assert WHERE in str(exc), f"error does not name the report: {exc}"


def _record(test_name, data):
    try:
        run_parser(data)
    except BaseException:
        fuzzing.save_crasher("misp", data, test_name, ".json")
        raise


@fuzzing.fuzz_settings(0.7)
@given(fuzzing.mutated_json(SEED_DOCS))
def test_fuzz_misp_structural(doc):
    _record("misp_structural", fuzzing.dumps(doc))


@fuzzing.fuzz_settings(0.3)
@given(fuzzing.mutated_bytes(SEED_BYTES))
def test_fuzz_misp_bytes(data):
    _record("misp_bytes", data)


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "misp").glob("*")), ids=lambda p: p.name)
def test_misp_crasher_regressions(path):
    run_parser(path.read_bytes())
