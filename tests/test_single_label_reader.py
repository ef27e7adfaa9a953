"""One reader of an event's labels: no module outside the TLP core reads a label field.

The rule of docs/tlp.md: the effective TLP of an event and its "do not disclose the
source" flag come from ``intelmq_crossborder.core.tlp.event_tlp`` and nowhere else.  This
test reads the source of the package and its bots (AST, not a grep, so strings in
docstrings do not count) and fails on any read of a label field outside ``core/tlp.py``:
``event.get("sharing.tlp")``, ``event["extra.misp_tags"]``, ``"tlp" in event``.
Writing a label (``out["sharing.tlp"] = ...``, ``event.add("sharing.tlp", ...)``) is
allowed.  A read of something that is not an event (a row of a module's own store,
a CSAF document's ``distribution.tlp``) carries the comment ``# not an event label``
on its line, with the reason.
"""
import ast
from pathlib import Path

from intelmq_crossborder.core import tlp
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [ROOT / "intelmq_crossborder"]
CORE = ROOT / "intelmq_crossborder" / "core" / "tlp.py"
FIELDS = set(tlp.LABEL_FIELDS) | set(tlp.TAG_FIELDS) | {tlp.HIDE_SOURCE_FIELD}
PRAGMA = "# not an event label"


def _reads(path: Path) -> list:
    source = path.read_text("utf-8")
    lines = source.splitlines()
    found = []

    def report(node, what):
        line = lines[node.lineno - 1]
        if PRAGMA not in line:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {what}: {line.strip()}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
            if isinstance(key, ast.Constant) and key.value in FIELDS:
                report(node, f"reads [{key.value!r}]")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "pop", "setdefault") and node.args:
            key = node.args[0]
            if isinstance(key, ast.Constant) and key.value in FIELDS:
                report(node, f"reads .{node.func.attr}({key.value!r})")
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and node.left.value in FIELDS and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            report(node, f"tests {node.left.value!r} in ...")
        elif isinstance(node, ast.Attribute) and node.attr in ("read_event_labels", "event_facts_labels"):
            report(node, f"uses {node.attr}")
    return found


def test_no_module_outside_the_tlp_core_reads_a_label_field():
    offenders = []
    for directory in PACKAGE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            if path != CORE:
                offenders += _reads(path)
    assert not offenders, ("read the event's labels with intelmq_crossborder.core.tlp.event_tlp, not directly:\n"
                           + "\n".join(offenders))


def test_the_rule_catches_a_direct_read(tmp_path):
    """The checker itself must find the reads it is meant to forbid (a test that cannot fail is no test)."""
    sample = tmp_path / "sample.py"
    sample.write_text('def f(event, out):\n'
                      '    a = event.get("sharing.tlp")\n'
                      '    b = event["extra.misp_tags"]\n'
                      '    c = "tlp" in event\n'
                      '    out["sharing.tlp"] = "RED"\n'
                      '    d = row["tlp"]  # not an event label: a row of the store\n', "utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = _reads(sample)
    finally:
        ROOT = saved
    assert [f.split(":")[1] for f in found] == ["2", "3", "4"]
