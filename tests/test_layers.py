"""The layering of ARCHITECTURE.md, checked from the source: every tlcli import (at module level
or inside a function) points to the same layer or a lower one, and no two units import each other,
directly or around a longer loop."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import tlcli

SOURCE = Path(tlcli.__file__).parent

# A unit is a subpackage or a top-level module of tlcli.
LAYERS = (
    {"version", "errors", "config", "files", "host", "vision", "cache", "runs", "run_files", "stopping", "metrics", "plots"},
    {"data", "models"},
    {"engine", "checkpoint", "features", "pipeline", "prepare", "recovery", "wiseft"},
    {"training", "finetuning", "resuming", "evaluation", "prediction", "exporting", "quantization", "diagnostics", "report", "serving", "study"},
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
            if isinstance(node, ast.ImportFrom) and node.module == "tlcli":  # from tlcli import training: the unit training
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
