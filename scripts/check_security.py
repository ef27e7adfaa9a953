#!/usr/bin/env python3
"""`make check-security`: bandit (static analysis) and pip-audit (known-vulnerable dependencies).

* bandit runs on intelmq_crossborder/ (bots included) against the baseline of justified findings in
  security/bandit-baseline.json (each one is justified in docs/security.md); any NEW finding
  fails (exit 1).
* pip-audit checks the installed environment against PyPI's vulnerability data. Vulnerabilities
  listed in security/pip-audit-ignore.txt (one id per line, with a comment justifying it) are
  ignored; any other fails. When the vulnerability service cannot be reached (an offline build
  machine: every dependency comes back "not found on PyPI"), the audit did NOT happen: that is
  reported, and fails only with XB_REQUIRE_AUDIT=1 (set it in CI that has network).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_bandit() -> int:
    cmd = [str(BIN / "bandit"), "-q", "-r", "intelmq_crossborder",
           "-b", "security/bandit-baseline.json", "-f", "json"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError):
        print("bandit: could not run:", proc.stderr.strip()[-500:])
        return 1
    for r in results:
        print(f"bandit: NEW {r['test_id']} {r['issue_severity']} {r['filename']}:{r['line_number']}: "
              f"{r['issue_text']}")
    print(f"bandit: {len(results)} new finding(s) beyond the justified baseline.")
    return 1 if results else 0


def run_pip_audit() -> int:
    ignore = []
    ignore_file = REPO / "security" / "pip-audit-ignore.txt"
    if ignore_file.exists():
        for line in ignore_file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                ignore += ["--ignore-vuln", line]
    cmd = [str(BIN / "pip-audit"), "--format", "json", "--progress-spinner", "off", *ignore]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    try:
        deps = json.loads(proc.stdout)["dependencies"]
    except (ValueError, KeyError):
        print("pip-audit: could not run:", (proc.stderr or proc.stdout).strip()[-500:])
        return 1 if os.environ.get("XB_REQUIRE_AUDIT") == "1" else 0
    audited = [d for d in deps if "skip_reason" not in d]
    vulns = [(d["name"], d["version"], v["id"]) for d in audited for v in d.get("vulns", [])]
    if not audited:
        print(f"pip-audit: NOT AUDITED - the vulnerability service was not reachable ({len(deps)} "
              "dependencies skipped). Run with network access; XB_REQUIRE_AUDIT=1 makes this fail.")
        return 1 if os.environ.get("XB_REQUIRE_AUDIT") == "1" else 0
    for name, version, vid in vulns:
        print(f"pip-audit: {name} {version}: {vid}")
    print(f"pip-audit: {len(audited)} dependencies audited, {len(vulns)} known vulnerabilities "
          f"({len(deps) - len(audited)} skipped).")
    return 1 if vulns else 0


if __name__ == "__main__":
    sys.exit(max(run_bandit(), run_pip_audit()))
