"""The shape of `worker_app`, read from its source with `ast`: wings, no cycles, decisions made once."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "worker_app"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

#: The wings (subpackages) each wing may import; a wing never imports one above it.
ALLOWED_WINGS: dict[str, set[str]] = {
    "config": set(),
    "fastpath": set(),
    "wordpress": {"config"},
    "observability": {"config", "fastpath"},
    "runtime": {"config", "fastpath", "observability", "wordpress"},
}
#: The one top-level module a wing may import: the exceptions jobs raise. It imports nothing of the
#: package, and its path is part of what failed spans say (`error.type`), so it stays at the top.
SHARED_TOP_LEVEL = {f"{PACKAGE}.errors"}
#: Where the environment is touched: the composition root reads it, the supervisor hands it to the
#: Dramatiq child, the SDK lifecycle writes the SDK's own defaults into it (the SDK reads nothing else).
ENVIRONMENT_USERS = {
    f"{PACKAGE}.runtime.process",
    f"{PACKAGE}.runtime.supervisor",
    f"{PACKAGE}.observability.telemetry",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path) -> set[str]:
    """Modules of the package that `module` imports, anywhere in it (lazy and type-only imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            # `from package import module` imports the module; `from module import name` the module.
            names = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names
            ]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = name
                while target not in MODULES:  # `worker_app.x.y` where y is a name in module x
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py") else None


def test_the_graph_is_read_from_the_source():
    assert f"{PACKAGE}.runtime.broker" in GRAPH[f"{PACKAGE}.runtime.process"]
    assert f"{PACKAGE}.observability.outcomes" in GRAPH[f"{PACKAGE}.observability.delivery"]
    assert f"{PACKAGE}.tasks" in GRAPH[f"{PACKAGE}.worker"]
    assert set(ALLOWED_WINGS) == {_wing(module) for module in MODULES} - {None}


def test_no_import_cycles():
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append([*visiting[visiting.index(module) :], module])
            return
        visiting.append(module)
        for imported in sorted(GRAPH[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(GRAPH):
        visit(module)
    assert cycles == []


def test_nothing_imports_upward():
    upward = []
    for module, imported in GRAPH.items():
        wing = _wing(module)
        if wing is None:
            continue  # a public entry point: it composes the wings
        for target in imported:
            target_wing = _wing(target)
            if target_wing is None:
                if target not in SHARED_TOP_LEVEL:
                    upward.append(f"{module} -> {target}")
            elif target_wing != wing and target_wing not in ALLOWED_WINGS[wing]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_outcome_of_a_delivery_is_decided_in_one_place():
    callers = [
        (module, node.lineno)
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "classify")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "classify")
        )
    ]
    assert [module for module, _ in callers] == [f"{PACKAGE}.observability.delivery"]


def test_only_the_composition_root_touches_the_environment():
    users = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                users.add(module)
            if (
                isinstance(node, ast.Name)
                and node.id in ("load_settings", "process_settings")
                and module != f"{PACKAGE}.runtime.process"
                and _wing(module) is not None
            ):
                users.add(module)
    assert users == ENVIRONMENT_USERS


#: The setup guide's import name: a module beside the package, shipped in the same distribution.
ALIAS_MODULE = "dramatiq_otlp_middleware"


def test_the_guides_module_is_only_an_alias_of_the_producer():
    import tomllib

    import dramatiq_otlp_middleware
    from worker_app import producer

    source = ROOT.parent / f"{ALIAS_MODULE}.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imports = [
        (node.module, [alias.name for alias in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert imports == [(f"{PACKAGE}.producer", ["DramatiqTracing"])]
    assert [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)] == [], (
        "no second implementation"
    )
    assert dramatiq_otlp_middleware.DramatiqTracing is producer.DramatiqTracing
    assert dramatiq_otlp_middleware.__doc__, "the alias says what it is"

    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["setuptools"]["py-modules"] == [ALIAS_MODULE]
    assert ALIAS_MODULE in pyproject["tool"]["mypy"]["modules"]
    dockerignore = (ROOT.parent / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert f"!{ALIAS_MODULE}.py" in dockerignore, "the image's build context holds it"
