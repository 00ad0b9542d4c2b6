"""The import graph of the project's own modules (lazy imports inside functions count; issues 9 and 29, DESIGN.md
"Layout", ARCHITECTURE.md).

The rule: every import goes down LAYERS or stays within its layer, so the graph has no cycle between layers, and none
inside one either (checked module by module). Methods are found by name (`bench.runs.methods` imports the module a
spec names with importlib, the check's probes likewise), so the run layer never imports a method. No module reaches
400 lines, and bench/ holds packages (one top-level module: errors.py)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "algorithms", "baselines", "experiments", "benchmarks")
MAX_LINES = 400
MAX_BENCH_TOP_LEVEL_MODULES = 1

LAYERS = (
    ("bench", "bench.errors"),
    ("bench.data", "bench.evaluation"),   # records and the parser, which the catalog's title normalisation reuses
    ("bench.models",),                    # backbones, rollout engines and caches, endpoint and LLM clients
    ("bench.runs",),                      # specs, one run, grids of runs, run folders, training logs, the check
    ("bench.report",),                    # reports from run folders only
    ("algorithms", "baselines"),          # the methods (SFT demonstrations come from baselines.sft_data)
    ("experiments", "benchmarks"),        # procedures around the methods: calibration, probes, speed benchmarks
    ("bench.commands", "cli"),            # the command line
)
"""Packages from the bottom up; a module may import its own layer's modules and those of the layers below."""


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project (packages' __init__ as the package name)."""
    modules = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (module level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` imports a, a.b and a.b.c; count the deepest that is one of ours.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None; iterative DFS with colours."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_find_cycle_sees_a_cycle_behind_any_import() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from bench.x import y\n    import bench.z.w\n")
    assert imported_modules(source, {"bench.x", "bench.x.y", "bench.z"}) == {"bench.x", "bench.x.y", "bench.z"}


def layer(module: str) -> int:
    """The index in LAYERS of the package `module` belongs to (its longest listed prefix)."""
    for prefix in (module.rsplit(".", depth)[0] for depth in range(module.count(".") + 1)):
        for index, packages in enumerate(LAYERS):
            if prefix in packages:
                return index
    raise AssertionError(f"{module} is in no layer of LAYERS: add its package")


def test_imports_go_down_the_layers() -> None:
    upward = [f"{module} -> {target}" for module, targets in sorted(import_graph().items())
              for target in sorted(targets) if layer(target) > layer(module)]
    assert not upward, "imports up the layers (LAYERS): " + "; ".join(upward)


def test_no_import_cycle_among_project_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(project_modules()))
def test_module_size_limit(name: str) -> None:
    path = project_modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines < MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit: under {MAX_LINES})"


def test_bench_top_level_is_packages() -> None:
    top = sorted(path.name for path in (ROOT / "bench").glob("*.py") if path.name != "__init__.py")
    assert len(top) <= MAX_BENCH_TOP_LEVEL_MODULES, f"bench/ has top-level modules {top}"
