"""No study replaces a product function at run time: where a study needs another behaviour, the
product takes it as a parameter. Checked on the source of every module under simulations/studies/
(an assignment to, or setattr / delattr on, anything imported from the product)."""

from __future__ import annotations

import ast
from pathlib import Path

STUDIES = Path(__file__).resolve().parents[2] / "simulations" / "studies"
PRODUCT = ("fedpriv", "client", "server", "strategies", "audit", "simulations.simulate", "simulations.personalize_run", "simulations.synthetic")


def _is_product(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PRODUCT)


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def product_mutations(source: str) -> list[str]:
    """`line: code` of each statement that assigns to an attribute of a name bound to product code."""
    tree = ast.parse(source)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {(a.asname or a.name.split(".")[0]) for a in node.names if _is_product(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_product(node.module) or any(_is_product(f"{node.module}.{a.name}") for a in node.names):
                bound |= {a.asname or a.name for a in node.names if a.name != "*"}
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            if _root(node.args[0]) in bound:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
            continue
        for target in targets:
            for element in ast.walk(target):
                if isinstance(element, ast.Attribute | ast.Subscript) and _root(element) in bound:
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
                    break
    return found


def test_the_check_catches_a_runtime_replacement():
    patched = (
        "def memoized():\n"
        "    from client import dp_training\n"
        "    dp_training.noise_multiplier_for = cached\n"
        "import fedpriv.config as config\n"
        "setattr(config, 'DP_WALK_RADIUS', 1.0)\n"
        "from client.dp_training import train_locally\n"
        "train_locally.__defaults__ = (None,)\n"
    )
    assert sorted(int(line.split(":")[0]) for line in product_mutations(patched)) == [3, 5, 7]
    assert product_mutations("from client.dp_training import encode\nsettings.out = 'x'\nencoded = encode\nrow['a'] = 1\n") == []


def test_no_study_assigns_to_product_code():
    sources = sorted(STUDIES.rglob("*.py"))
    assert len(sources) > 10  # the studies are where this test looks for them
    found = {str(p.relative_to(STUDIES)): product_mutations(p.read_text()) for p in sources}
    assert {name: lines for name, lines in found.items() if lines} == {}
