"""The project's modules import each other without cycles, and at the top of the module.

An import cycle is two modules that cannot be understood (or loaded) one without the other; an
import inside a function is how such a cycle usually hides. Both tests read the source with `ast`,
so they see every import, at any depth, whether or not it has run.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("config", "chat", "engine")

# Imports that belong inside a function, and why. Anything else imported there is a cycle in
# hiding or a cost nobody decided on: import it at the top of the module instead.
FUNCTION_LEVEL_IMPORTS = {
    # The bounded child (run by path, outside Django) imports a parser only for a file that needs
    # it, pypdf before it lowers its memory limit; the server imports the module for its types
    # and never parses. ctypes serves only the Linux death signal, where the platform has it.
    "engine.knowledge.extraction.child": {
        "pypdf",
        "pypdf.errors",
        "xml.etree.ElementTree",
        "ctypes",
    },
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
    }


def imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int, bool]]:
    """Each (imported module, line, inside a function?) of a file; a `from package import name`
    counts as importing the submodule when `name` is one."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    in_function: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(ast.walk(node))
    for node in ast.walk(tree):
        inside = node in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, inside
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in modules else base), node.lineno, inside


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {target for target, _, _ in imports(path, modules) if target in modules}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that lies on any cycle, each reported once."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        # Breadth first from the start's imports back to the start: the shortest way round.
        paths = {target: [start, target] for target in sorted(graph[start])}
        queue = list(paths)
        while queue and start not in paths:
            current = queue.pop(0)
            for target in sorted(graph[current]):
                if target not in paths:
                    paths[target] = [*paths[current], target]
                    queue.append(target)
        if start in paths:
            found.setdefault(frozenset(paths[start]), paths[start])
    return sorted(found.values())


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert [" -> ".join(cycle) for cycle in cycles(graph)] == []


def test_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]


def test_imports_inside_functions_are_allowed_ones() -> None:
    modules = project_modules()
    unexplained, used = [], set()
    for name, path in modules.items():
        allowed = FUNCTION_LEVEL_IMPORTS.get(name, set())
        for target, line, inside in imports(path, modules):
            if not inside:
                continue
            if target in allowed:
                used.add((name, target))
            else:
                unexplained.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert unexplained == []
    listed = {
        (name, target) for name, targets in FUNCTION_LEVEL_IMPORTS.items() for target in targets
    }
    assert listed - used == set(), "allowed imports that no longer happen: drop them from the list"
