"""The import graph of the project's own modules: no cycles (lazy imports inside functions count) and no module
over the size limits (issue 9; DESIGN.md "Layout")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "algorithms", "baselines", "experiments", "benchmarks")
MAX_LINES = 400
MAX_BENCH_TOP_LEVEL_MODULES = 1


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
