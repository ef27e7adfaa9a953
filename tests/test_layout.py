"""The layers of docs/layout.md, checked on the imports: a module that reaches up a layer fails here.

Read with ast (imports inside functions count too). The test checks itself: a made-up module that
breaks each rule must be reported."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "intelmq_crossborder"

#: what each layer may import of ours (besides itself); None: anything
ALLOWED = {
    "core": set(),
    "harmonization": {"core"},
    "policy": {"core", "harmonization"},
    "formats": {"core", "harmonization", "policy"},
    "exchange": {"core", "harmonization", "policy", "formats"},
    "datalake": {"core", "harmonization", "policy", "formats"},
    "analytics": {"core", "harmonization", "policy", "formats"},
    "runtime": {"core", "harmonization", "policy", "formats"},
    "testing": {"core", "harmonization", "policy", "formats"},
    "demo": {"core", "harmonization", "policy", "formats", "exchange", "datalake", "analytics", "runtime"},
    "bots": None,
    "cli": None,
}
#: IntelMQ's Bot internals (name-mangled attributes) are read in runtime/ only
MANGLED = "_Bot__"


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []


def problems_of(layer: str, source: str, where: str) -> list:
    found = []
    allowed = ALLOWED[layer]
    tree = ast.parse(source)
    for line, module, names in _imports(tree):
        parts = module.split(".")
        if parts[0] != "intelmq_crossborder":
            continue
        targets = [parts[1]] if len(parts) > 1 else names
        for target in targets:
            if target in ALLOWED and target != layer and allowed is not None and target not in allowed:
                found.append(f"{where}:{line}: {layer} imports {target}")
    if layer != "runtime" and MANGLED in source:
        found.append(f"{where}: reads IntelMQ's Bot internals ({MANGLED}...) outside runtime/")
    return found


def test_every_module_stays_in_its_layer():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2 or parts[0] not in ALLOWED:
            continue
        problems += problems_of(parts[0], path.read_text("utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not problems, "\n".join(problems)


def test_the_rule_can_fail():
    assert problems_of("core", "from intelmq_crossborder.policy import decide\n", "x.py")
    assert problems_of("formats", "def f():\n    from intelmq_crossborder.exchange import spool\n", "x.py")
    assert problems_of("policy", "from intelmq_crossborder import cli\n", "x.py")
    assert problems_of("analytics", "x = bot._Bot__current_message\n", "x.py")
    assert not problems_of("bots", "from intelmq_crossborder.cli import main\n", "x.py")
