"""chat/ and engine/ meet only at the HTTP API: neither imports the other (design.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            # `from ..engine import x` or `from .. import engine` climbs out of the app.
            names.update([node.module] if node.module else [a.name for a in node.names])
    return names


@pytest.mark.parametrize(("app", "forbidden"), [("chat", "engine"), ("engine", "chat")])
def test_apps_do_not_import_each_other(app: str, forbidden: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / app).rglob("*.py"))
        for name in imported_modules(path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert offenders == []
