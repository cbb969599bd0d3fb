"""The console reads and changes queues only through the admin service's public methods."""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor.web
from conveyor import Queue
from conveyor.admin import Admin

WEB = Path(conveyor.web.__file__).parent


def _attribute_uses() -> list[tuple[str, int, str, str]]:
    """Every ``owner.name`` attribute access in the console's modules."""
    found = []
    for path in sorted(WEB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                found.append((path.name, node.lineno, ast.unparse(node.value), node.attr))
    return found


def test_the_console_never_reaches_a_backend() -> None:
    reaching = [
        f"{name}:{line} {owner}.{attr}"
        for name, line, owner, attr in _attribute_uses()
        if attr == "backend"
    ]
    assert reaching == []


def test_the_console_uses_no_private_part_of_the_admin_service() -> None:
    admin = Admin(Queue.from_url("memory://"))
    names = {*dir(Admin), *vars(admin)}
    private = {n for n in names if n.startswith("_") and not n.startswith("__")}
    assert "_select" in private and "_connected_here" in private
    used = [
        f"{name}:{line} {owner}.{attr}"
        for name, line, owner, attr in _attribute_uses()
        if attr in private and owner != "self"
    ]
    assert used == []
