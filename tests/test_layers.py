"""The layering of ARCHITECTURE.md, checked from the source: every tlcli import (at module level
or inside a function) points to the same layer or a lower one; no two packages import each other,
directly or around a longer loop, and no module-level import makes a loop between modules; no
function is over 60 lines and no module over 300."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import tlcli

SOURCE = Path(tlcli.__file__).parent

# A unit is a package of tlcli (or a top-level module: __main__); the layers are folders on disk.
LAYERS = (
    {"core"},
    {"data", "models"},
    {"engine"},
    {"run"},
    {"evaluation", "prediction", "serving", "deploy", "experiments"},
    {"api", "bench", "cli", "__main__"},
    {"tlcli"},  # the package itself: the public API that `import tlcli` gives
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tlcli"


def _imports() -> dict[str, set[tuple[str, str]]]:
    """{unit: {(imported unit, importing file)}} over every tlcli import in the source."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE).with_suffix("")
        unit = relative.parts[0] if len(relative.parts) > 1 or relative.name != "__init__" else "tlcli"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tlcli":  # from tlcli import api: the unit api
                names = [f"tlcli.{alias.name}" for alias in node.names]
            else:
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                    [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name == "tlcli" or name.startswith("tlcli."):
                    edges[unit].add((_unit(name), str(relative)))
    return edges


def test_every_unit_has_a_layer():
    units = {path.relative_to(SOURCE).with_suffix("").parts[0] for path in SOURCE.iterdir()
             if path.suffix == ".py" or (path / "__init__.py").exists() or path.is_dir() and any(path.glob("*.py"))}
    units = {"tlcli" if unit == "__init__" else unit for unit in units}
    assert units - set(RANK) == set(), "add new units to LAYERS (and to ARCHITECTURE.md)"


def test_imports_point_down_or_sideways():
    upward = sorted(f"{where} imports {target} (layer {RANK[target]} above {RANK[unit]})"
                    for unit, targets in _imports().items() for target, where in targets if RANK[target] > RANK[unit])
    assert upward == []


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import path from ``start`` to ``goal``, or None."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        if path[-1] == goal:
            return path
        for target in sorted(graph.get(path[-1], ())):
            if target not in seen:
                seen.add(target)
                paths.append(path + [target])
    return None


def test_no_import_cycles_between_units():
    graph = {unit: {target for target, _ in targets if target != unit} for unit, targets in _imports().items()}
    cycles = {" -> ".join([unit, *back]) for unit, targets in graph.items() for target in targets
              if (back := _path(graph, target, unit)) is not None}
    assert sorted(cycles) == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports() -> dict[str, set[str]]:
    """{module: {tlcli modules it imports when it is imported}}: the imports at module level,
    those that can leave a module half-initialised in a cycle."""
    modules = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tlcli":
                names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            graph[module] |= {name for name in names if name in modules and name != module}
    return graph


def test_no_import_cycles_between_modules():
    graph = _module_imports()
    cycles = {" -> ".join([module, *back]) for module, targets in graph.items() for target in targets
              if (back := _path(graph, target, module)) is not None}
    assert sorted(cycles) == []


# The size a reader takes in at once: a function on a screen, a module in one sitting.
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300


def test_no_function_over_60_lines_and_no_module_over_300():
    too_long = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(SOURCE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(SOURCE)}: {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []


ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"


def test_architecture_md_lists_the_layers_and_the_run_package_as_they_are_on_disk():
    text = ARCHITECTURE.read_text()
    table = {int(rank): {name.strip("`/") for name in re.findall(r"`[^`]+`", units)}
             for rank, units in re.findall(r"^\| (\d) \| ([^|]+) \|", text, flags=re.M)}
    assert table == dict(enumerate(LAYERS))
    listing = text[text.index("run/\n"):text.index("```", text.index("run/\n"))]
    described = re.findall(r"^  (\w+\.py) ", listing, flags=re.M)
    on_disk = sorted(path.name for path in (SOURCE / "run").glob("*.py") if path.name != "__init__.py")
    assert sorted(described) == on_disk
