"""The package layout's rules, checked on the source (docs/architecture.md).

* No import circle between modules of `sipedge`, counting imports under `if TYPE_CHECKING:` and
  inside functions: a module that must call back owns a Protocol that the other implements.
* No module over 600 lines unless its docstring says why ("longer than 600 lines because ...").
* Packages depend in one direction (`LAYERS`, drawn in docs/architecture.md).
* Only `sipedge.store` opens SQLite.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "daemons"
PACKAGE = PACKAGE_ROOT / "sipedge"
MAX_LINES = 600
LONG_REASON = "longer than 600 lines because"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that `name` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, name, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif target in modules:
                    found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = import_graph()
    assert len(graph) > 40, "the checker found too few modules"
    found = cycles(graph)
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


# Which packages each package may import. The composition roots (sipd, cli, demo) may import
# anything. "(root)" is `sipedge/__init__.py` (the version).
LAYERS: dict[str, set[str]] = {
    "typedefs": set(),
    "ratelog": set(),
    "entropy": set(),
    "gcwatch": set(),
    "sip": {"typedefs"},
    "store": {"typedefs"},
    "config": {"typedefs"},
    "resolver": {"typedefs"},
    "stats": set(),
    "appliance": {"(root)"},
    "api": {"(root)", "typedefs"},
    "media": {"(root)", "appliance", "config", "typedefs"},
    "calls": {"config", "media", "resolver", "sip", "store", "typedefs"},
    "uplinks": {"(root)", "calls", "config", "resolver", "sip", "typedefs"},
    "natd": {"(root)", "appliance", "config", "sip", "typedefs"},
    "registrar": {"calls", "config", "natd", "sip", "store", "typedefs", "uplinks"},
    "guard": {"calls", "config", "sip", "typedefs"},
}
COMPOSITION_ROOTS = {"sipd", "cli", "demo", "(root)"}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


LEAVES = {"typedefs", "ratelog", "entropy"}  # may be imported from anywhere


def test_packages_depend_in_one_direction() -> None:
    wrong = []
    for module, targets in import_graph().items():
        package = package_of(module)
        if package in COMPOSITION_ROOTS:
            continue
        assert package in LAYERS, f"{module}: a new package belongs in LAYERS"
        for target in targets:
            other = package_of(target)
            if other != package and other not in LAYERS[package] | LEAVES:
                wrong.append(f"{module} -> {target}")
            # call control reaches mediad only through its client, never the daemon's modules
            if (
                package == "calls"
                and other == "media"
                and target
                not in (
                    "sipedge.media",
                    "sipedge.media.client",
                )
            ):
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layering: " + ", ".join(sorted(wrong))


def test_modules_stay_short_or_say_why() -> None:
    too_long = []
    for name, path in all_modules().items():
        text = path.read_text()
        lines = text.count("\n")
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if LONG_REASON not in " ".join(doc.lower().split()):
            too_long.append(f"{name} ({lines} lines)")
    assert too_long == [], "modules over 600 lines without a reason: " + ", ".join(too_long)


def imports_sqlite(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            return True
    return False


def test_only_the_store_opens_sqlite() -> None:
    outside = [
        name
        for name, path in all_modules().items()
        if not name.startswith("sipedge.store") and imports_sqlite(path)
    ]
    assert outside == []
