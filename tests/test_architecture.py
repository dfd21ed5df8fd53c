"""The layout rules of fedpriv, checked from the source with ``ast`` (nothing is imported).

Layers, lowest first (a layer may import the ones listed for it, and itself):

============ ==================================================================
layer        may import
============ ==================================================================
core         ``fedpriv`` except ``fedpriv.cli``: nothing above it
client       core
strategies   core
server       core, strategies
simulations  core, client, server, strategies (product part: ``simulate.py``,
             ``personalize_run.py``, ``synthetic/``)
audit        the product, not the command tree
cli          ``fedpriv.cli``, the top: every product layer; nothing imports it
studies      ``simulations/studies/`` and ``simulations/benchmarks/`` (the lab):
benchmarks   the product and each other, never the command tree
============ ==================================================================

The product (every layer but the lab) never imports the lab. Imports inside functions count
like any other: a lazy import is still a dependency. Besides the layers, the product has no
import cycles, loads no first-party module by name (``importlib``), and no module reaches
into another's private names or replaces another's functions at run time.
"""

from __future__ import annotations

import ast
import itertools
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("fedpriv", "client", "server", "strategies", "simulations", "audit")

PRODUCT = ("core", "client", "strategies", "server", "simulations", "audit", "cli")
LAB = ("studies", "benchmarks")
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "client": {"core", "client"},
    "strategies": {"core", "strategies"},
    "server": {"core", "strategies", "server"},
    "simulations": {"core", "client", "strategies", "server", "simulations"},
    "audit": {"core", "client", "strategies", "server", "simulations", "audit"},
    "cli": set(PRODUCT),
    "studies": set(PRODUCT) - {"cli"} | set(LAB),
    "benchmarks": set(PRODUCT) - {"cli"} | set(LAB),
}
DYNAMIC_IMPORTERS = {"importlib.import_module", "importlib.__import__", "__import__"}


def layer_of(module: str) -> str:
    if module == "fedpriv.cli" or module.startswith("fedpriv.cli."):
        return "cli"
    if module.split(".")[0] == "fedpriv":
        return "core"
    for lab in ("studies", "benchmarks"):
        prefix = f"simulations.{lab}"
        if module == prefix or module.startswith(prefix + "."):
            return lab
    return module.split(".")[0]


@dataclass(frozen=True)
class Import:
    target: str  # the first-party module imported (a submodule when ``from pkg import submodule``)
    line: int
    names: tuple[str, ...] = ()  # for ``from target import a, b``: the names taken from ``target``


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> first-party module or importlib name

    @property
    def where(self) -> str:
        return str(self.path.relative_to(REPO))

    def at(self, line: int) -> str:
        return f"{self.where}:{line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_first_party(module: str) -> bool:
    return module.split(".")[0] in TOP_PACKAGES


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for top in TOP_PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            name = _module_name(path)
            found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    for module in found.values():
        _collect_imports(module, found)
    return found


def _known(name: str, known: dict[str, Module]) -> str:
    """The longest prefix of ``name`` that is a module here (``name`` itself if none is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def _collect_imports(module: Module, known: dict[str, Module]) -> None:
    is_package = module.path.name == "__init__.py"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "importlib" or alias.name.startswith("importlib."):
                    module.aliases[alias.asname or "importlib"] = "importlib"
                if not _is_first_party(alias.name):
                    continue
                module.imports.append(Import(_known(alias.name, known), node.lineno))
                if alias.asname:
                    module.aliases[alias.asname] = alias.name
                else:  # ``import a.b.c`` binds ``a``; ``a.b.c`` is then reached through attributes
                    module.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.name.split(".") if is_package else module.name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "importlib":
                for alias in node.names:
                    module.aliases[alias.asname or alias.name] = f"importlib.{alias.name}"
            if not _is_first_party(source):
                continue
            plain: list[str] = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    module.imports.append(Import(submodule, node.lineno))
                    module.aliases[alias.asname or alias.name] = submodule
                else:
                    plain.append(alias.name)
            if plain:
                module.imports.append(Import(_known(source, known), node.lineno, tuple(plain)))


def product_modules() -> list[Module]:
    return [m for m in modules().values() if layer_of(m.name) in PRODUCT]


def lab_modules() -> list[Module]:
    return [m for m in modules().values() if layer_of(m.name) in LAB]


def non_test_modules() -> list[Module]:
    return list(modules().values())


SCOPES = [pytest.param("product", id="product"), pytest.param("lab", id="lab")]


def in_scope(scope: str) -> list[Module]:
    return product_modules() if scope == "product" else lab_modules()


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a plain name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _resolve(module: Module, node: ast.expr) -> str | None:
    """The first-party module (or ``importlib`` callable) an expression names, if it names one."""
    dotted = _dotted(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    if head not in module.aliases:
        return None
    return module.aliases[head] + (f".{rest}" if rest else "")


def _report(violations: list[str], rule: str) -> None:
    if violations:
        pytest.fail(f"{rule}:\n  " + "\n  ".join(sorted(set(violations))), pytrace=False)


# --------------------------------------------------------------------------- the tests


def test_every_packaged_folder_has_a_layer() -> None:
    """A new top-level package must be given a place in the layers above before it ships."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packaged = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    unplaced = [p for p in packaged if p not in TOP_PACKAGES]
    assert not unplaced, f"pyproject.toml packages {unplaced} have no layer in tests/test_architecture.py"
    assert "fedpriv.cli" in modules() and "simulations.studies" in modules(), "the layout moved; update this test"


def test_the_product_never_imports_the_lab() -> None:
    violations = [
        f"{m.at(imp.line)}: {m.name} imports {imp.target} ({layer_of(imp.target)}); "
        "the product never imports simulations.studies or simulations.benchmarks"
        for m in product_modules()
        for imp in m.imports
        if layer_of(imp.target) in LAB
    ]
    _report(violations, "product code imports the lab")


def test_each_layer_imports_only_the_layers_below_it() -> None:
    violations = []
    for m in non_test_modules():
        layer = layer_of(m.name)
        allowed = ALLOWED[layer]
        for imp in m.imports:
            target_layer = layer_of(imp.target)
            if target_layer not in allowed:
                violations.append(
                    f"{m.at(imp.line)}: {m.name} ({layer}) imports {imp.target} ({target_layer}); "
                    f"{layer} may import only {', '.join(sorted(allowed))}"
                )
    _report(violations, "layering broken")


def test_nothing_but_the_command_tree_imports_it() -> None:
    violations = [
        f"{m.at(imp.line)}: {m.name} imports {imp.target}; only fedpriv.cli (and tests) may import fedpriv.cli"
        for m in non_test_modules()
        if layer_of(m.name) != "cli"
        for imp in m.imports
        if layer_of(imp.target) == "cli"
    ]
    _report(violations, "the command tree is imported from below")


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path start -> ... -> start inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & members):
                if succ == start:
                    path = [start, node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path[1:])) + [start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")  # cannot happen inside a component


def import_graph(members: list[Module]) -> tuple[dict[str, set[str]], dict[tuple[str, str], int]]:
    names = {m.name for m in members}
    graph: dict[str, set[str]] = {name: set() for name in names}
    first_line: dict[tuple[str, str], int] = {}
    for m in members:
        for imp in m.imports:
            if imp.target in names and imp.target != m.name:
                graph[m.name].add(imp.target)
                key = (m.name, imp.target)
                first_line[key] = min(first_line.get(key, imp.line), imp.line)
    return graph, first_line


def test_the_product_has_no_import_cycles() -> None:
    known = modules()
    graph, first_line = import_graph(product_modules())
    violations = []
    for component in _strongly_connected(graph):
        cycle = _cycle_through(component[0], set(component), graph)
        steps = [
            f"{a} ({known[a].at(first_line[(a, b)])}) -> {b}" for a, b in itertools.pairwise(cycle)
        ]
        violations.append(f"cycle among {len(component)} modules {component}: " + "; ".join(steps))
    _report(violations, "import cycles in the product")


def _dynamic_import_target_is_third_party(call: ast.Call) -> bool:
    """True when the module name is a literal (or an f-string's literal head) outside the first party."""
    if not call.args:
        return False
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        prefix = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        if "." not in prefix:  # f"fed{x}" could still be first party
            return False
    else:
        return False
    return not _is_first_party(prefix)


def test_the_product_loads_no_module_by_name() -> None:
    """Product modules are imported by name in the source, never through ``importlib``.

    A literal third-party name computed from data (Faker's per-locale providers) is allowed: it
    cannot hide a first-party dependency from the checks above.
    """
    violations = []
    for m in product_modules():
        for node in ast.walk(m.tree):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name):
                called = m.aliases.get(node.func.id, node.func.id)
            else:
                called = _resolve(m, node.func)
            if called in DYNAMIC_IMPORTERS and not _dynamic_import_target_is_third_party(node):
                violations.append(
                    f"{m.at(node.lineno)}: {m.name} calls {called}(...); import the module in the source instead"
                )
    _report(violations, "dynamic imports in the product")


def _private_uses(m: Module, known: dict[str, Module]) -> Iterator[str]:
    for imp in m.imports:
        for name in imp.names:
            if _is_private(name):
                yield f"{m.at(imp.line)}: {m.name} imports the private name {name} from {imp.target}"
        if imp.target in known and not imp.names:
            leaf = imp.target.rsplit(".", 1)[-1]
            owner = imp.target.rsplit(".", 1)[0]
            inside = m.name == owner or m.name.startswith(owner + ".")
            if _is_private(leaf) and not inside:
                yield f"{m.at(imp.line)}: {m.name} imports {imp.target}, private to {owner}"
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            target = _resolve(m, node.value)
            if target in known and target != m.name:
                yield f"{m.at(node.lineno)}: {m.name} reads {target}.{node.attr}, a private name of another module"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            target = _resolve(m, node.args[0])
            if target in known and target != m.name:
                yield f"{m.at(node.lineno)}: {m.name} uses {node.func.id}({target}, {node.args[1].value!r})"


@pytest.mark.parametrize("scope", SCOPES)
def test_no_module_uses_another_modules_private_names(scope: str) -> None:
    """What two modules share is public in the module that owns it (product and lab alike)."""
    known = modules()
    _report([v for m in in_scope(scope) for v in _private_uses(m, known)], f"{scope}: private names used across modules")


@pytest.mark.parametrize("scope", SCOPES)
def test_no_module_replaces_another_modules_functions(scope: str) -> None:
    """No module assigns into another module (``dp_training.noise_multiplier_for = ...``) at run time;
    a behaviour a caller needs to change is a parameter of the product function."""
    known = modules()
    violations = []
    for m in in_scope(scope):
        for node in ast.walk(m.tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"setattr", "delattr"}:
                if node.args and _resolve(m, node.args[0]) in known:
                    violations.append(f"{m.at(node.lineno)}: {m.name} calls {node.func.id} on {_resolve(m, node.args[0])}")
                continue
            for target in targets:
                if isinstance(target, ast.Attribute):
                    owner = _resolve(m, target.value)
                    if owner in known and owner != m.name:
                        violations.append(f"{m.at(node.lineno)}: {m.name} assigns {owner}.{target.attr}")
    _report(violations, f"{scope}: modules patched at run time")
