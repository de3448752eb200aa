"""The package's layers (docs/architecture.md, "Layers"): nothing imports upward.

Each module of ``agentdb/`` (the checkout's, read with ``ast``, not imported) belongs to
one layer, says so in the first line of its docstring, and imports agentdb modules of its
own layer or of the layers below only. Every import counts: at module level, inside a
function (a lazy import is still a dependency) and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agentdb"

# The layer table of docs/architecture.md.
DRIVER, DIALECT, DROP_IN, OPS, TESTING = "driver", "dialect", "drop-in", "ops", "testing"
LAYERS: dict[str, str] = {
    # the native API: the C core and thin Python over it
    "agentdb": DRIVER,
    "agentdb._core": DRIVER,  # the C extension (src/)
    "agentdb._aio": DRIVER,
    "agentdb._sql": DRIVER,
    "agentdb.errors": DRIVER,
    "agentdb.dsn": DRIVER,
    "agentdb.copy_format": DRIVER,
    "agentdb.copy_io": DRIVER,
    "agentdb.transaction": DRIVER,
    "agentdb.prepared": DRIVER,
    "agentdb.cursor": DRIVER,
    "agentdb.types": DRIVER,
    "agentdb.sslcontext": DRIVER,
    "agentdb.connection": DRIVER,
    "agentdb.pool": DRIVER,
    "agentdb.logs": DRIVER,
    "agentdb.capabilities": DRIVER,
    # SQLAlchemy's postgresql+agentdb over the native API
    "agentdb.sqlalchemy": DIALECT,
    "agentdb.sqlalchemy.dialect": DIALECT,
    "agentdb.sqlalchemy.dbapi": DIALECT,
    "agentdb.sqlalchemy.pool": DIALECT,
    "agentdb.sqlalchemy.provision": DIALECT,
    # the FastAPI drop-in: settings from the environment, the four functions
    "agentdb.settings": DROP_IN,
    "agentdb.database": DROP_IN,
    # tools for running a service
    "agentdb.cli": OPS,
    "agentdb.__main__": OPS,
    "agentdb.metrics": OPS,
    # tools for testing one
    "agentdb.testing": TESTING,
    "agentdb.testing.cluster": TESTING,
    "agentdb.testing.plugin": TESTING,
}
# Which layers a layer's modules may import. Ops and testing both sit on the drop-in and
# know nothing of each other.
MAY_IMPORT: dict[str, set[str]] = {
    DRIVER: {DRIVER},
    DIALECT: {DRIVER, DIALECT},
    DROP_IN: {DRIVER, DIALECT, DROP_IN},
    OPS: {DRIVER, DIALECT, DROP_IN, OPS},
    TESTING: {DRIVER, DIALECT, DROP_IN, TESTING},
}
# agentdb/__init__ re-exports the drop-in functions, imported on first use (and named for
# type checkers): ``from agentdb import get_session`` is documented API.
ALLOWED_UPWARD = {("agentdb", "agentdb.database"), ("agentdb", "agentdb.settings")}

# Optional dependencies: the driver runs without them (``import agentdb`` needs no
# SQLAlchemy) and so does ops (``python -m agentdb check`` in a container). A module of those
# layers imports them only inside a function or for type checkers.
OPTIONAL = {"sqlalchemy", "sqlmodel", "fastapi", "pytest", "httpx", "anyio", "opentelemetry"}
NEEDS_NO_OPTIONAL = {DRIVER, OPS}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, module: str) -> Iterator[tuple[int, str, bool]]:
    """``(line, module imported, at run time at module level)`` for every import in the
    file; ``from x import y`` counts as importing ``x.y`` when that is a module."""
    known = set(LAYERS) | set(modules())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top_level = set(_runtime_top_level(tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, node in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in known else base, node in top_level


def _runtime_top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported: module level, through
    ``if``/``try``/``with`` blocks, but not ``if TYPE_CHECKING:``."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = stmt.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                yield from _runtime_top_level(stmt.orelse)
                continue
            yield from _runtime_top_level(stmt.body)
            yield from _runtime_top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _runtime_top_level(block)
            for handler in stmt.handlers:
                yield from _runtime_top_level(handler.body)
        elif isinstance(stmt, ast.With):
            yield from _runtime_top_level(stmt.body)
        else:
            yield stmt


def layer_of(target: str) -> str | None:
    """The layer of an agentdb module (of its package, for a name inside one)."""
    while target:
        if target in LAYERS:
            return LAYERS[target]
        target = target.rpartition(".")[0]
    return None


def test_every_module_has_a_layer() -> None:
    found = set(modules())
    assert found, PACKAGE
    assert found - set(LAYERS) == set(), "give the new module a layer here and in the docs"
    assert set(LAYERS) - found == {"agentdb._core"}, "a module listed here is gone"


@pytest.mark.parametrize("module", sorted(modules()))
def test_docstring_names_the_layer(module: str) -> None:
    path = modules()[module]
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
    first = doc.split("\n", 1)[0]
    layer = LAYERS[module]
    assert first.startswith(f"{layer[0].upper()}{layer[1:]} layer: "), (module, first)
    assert first.endswith("."), f"{module}: the first line is one sentence: {first!r}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_nothing_imports_upward(module: str) -> None:
    layer = LAYERS[module]
    wrong = [
        f"{module}:{line} imports {target} ({layer_of(target)} layer)"
        for line, target, _runtime in imported(modules()[module], module)
        if (target == "agentdb" or target.startswith("agentdb."))
        and layer_of(target) not in MAY_IMPORT[layer]
        and (module, target) not in ALLOWED_UPWARD
    ]
    assert wrong == [], f"{module} is in the {layer} layer"


@pytest.mark.parametrize(
    "module", sorted(m for m in modules() if LAYERS.get(m) in NEEDS_NO_OPTIONAL)
)
def test_driver_and_ops_import_no_optional_dependency_at_import_time(module: str) -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for line, target, runtime in imported(modules()[module], module)
        if runtime and target.split(".")[0] in OPTIONAL
    ]
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader itself: relative imports, lazy ones and type-only ones all count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import settings as _s\n"
        "if TYPE_CHECKING:\n"
        "    from .sqlalchemy.pool import AgentdbPool\n"
        "def f():\n"
        "    import agentdb.cli\n"
        "    from .testing import plugin\n"
        "import sqlalchemy\n"
    )
    path = tmp_path / "connection.py"
    path.write_text(source)
    found = {(target, runtime) for _line, target, runtime in imported(path, "agentdb.connection")}
    assert found == {
        ("typing", True),
        ("agentdb.settings", True),
        ("agentdb.sqlalchemy.pool", False),
        ("agentdb.cli", False),
        ("agentdb.testing.plugin", False),
        ("sqlalchemy", True),
    }


def test_the_table_in_the_docs_is_this_one() -> None:
    """docs/architecture.md's "Layers" table: the same modules per layer, the same rule."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    for row in re.findall(r"^\| (driver|dialect|drop-in|ops|testing) \|(.*)$", section, re.M):
        layer, rest = row
        cells = [c.strip() for c in rest.split("|")]
        for name in re.findall(r"`([\w/]+?)(?:\.py)?`", cells[0]):
            module = ".".join(["agentdb", *name.split("/")]).removesuffix(".__init__")
            documented[module] = layer
        allowed[layer] = {w.strip() for w in cells[2].split(",")}
    assert documented == LAYERS
    assert allowed == MAY_IMPORT
