"""bandit finds nothing beyond the justified baseline (security/bandit-baseline.json, docs/security.md).

pip-audit needs the network and runs in `make check-security` (scripts/check_security.py).
"""
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BANDIT = Path(sys.executable).parent / "bandit"


@pytest.mark.skipif(not BANDIT.exists() and not shutil.which("bandit"), reason="bandit not installed (test extra)")
def test_bandit_no_new_findings():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_security
    finally:
        sys.path.pop(0)
    assert check_security.run_bandit() == 0


def test_baseline_findings_are_justified_in_the_docs():
    import json
    baseline = json.loads((REPO / "security" / "bandit-baseline.json").read_text())
    doc = (REPO / "docs" / "security.md").read_text()
    for finding in baseline["results"]:
        assert f"{finding['test_id']}" in doc and finding["filename"] in doc, finding
