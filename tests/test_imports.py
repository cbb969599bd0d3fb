"""The package's import graph: no cycles, and nothing the queue is built from imports it back.

The graph is read from the source (the AST of every module of ``src/conveyor``), so that a
cycle shows even when the order of imports happens to let it load. Every module is also
imported alone, in an interpreter that has loaded nothing else of the package but its
``__init__`` (which Python loads first anyway).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor

PACKAGE = Path(conveyor.__file__).parent
#: Modules below the queue that refer to it anyway, and why. ``Job.queue`` is the job's
#: :class:`~conveyor.queue.Queue` and a job's storage methods forward to it (SAQ's API).
REFERS_TO_THE_QUEUE = {"conveyor.job"}


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("conveyor", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, type_checking: bool, outside: set[str] | None = None) -> set[str]:
    """The modules of the package that module ``name`` imports when it is loaded.

    Imports inside functions are left out (they run later, if ever); those under ``if
    TYPE_CHECKING:`` count only with ``type_checking``. ``from conveyor import x`` names the
    module ``conveyor.x`` when there is one, else the package. The modules it imports from
    outside the package are added to ``outside``.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    if outside is None:
        outside = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                if type_checking:
                    visit(node.body)
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    if target.partition(".")[0] != "conveyor":
                        outside.add(target)
                    while target and target not in MODULES:
                        target = target.rpartition(".")[0]
                    if target:
                        found.add(target)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if not node.level and base.partition(".")[0] != "conveyor":
                    outside.add(base)
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                for alias in node.names:
                    if f"{base}.{alias.name}" in MODULES:
                        found.add(f"{base}.{alias.name}")
                    elif base in MODULES:
                        found.add(base)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    visit(child.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    found.discard(name)
    return found


def _graph(type_checking: bool) -> dict[str, set[str]]:
    return {name: _imports(name, type_checking) for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the list of its modules (the first repeated last), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = todo.pop()
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph[nxt])))
                path.append(nxt)
                on_path.add(nxt)
    return None


def test_no_import_cycle_when_the_package_loads() -> None:
    cycle = _cycle(_graph(type_checking=False))
    assert cycle is None, " -> ".join(cycle or [])


def test_nothing_the_queue_is_built_from_imports_it_back() -> None:
    """The queue, the backends and all they load (and so on) form no cycle, not even with
    the imports made only for type checking: each can be read without what is above it."""
    loaded = _graph(type_checking=False)
    backends = {name for name in MODULES if name.startswith("conveyor.backends")}
    core = {"conveyor.queue", "conveyor.queue.base", *backends}
    todo = list(core)
    while todo:
        for module in loaded[todo.pop()] - core:
            core.add(module)
            todo.append(module)
    assert {"conveyor.job", "conveyor.lifecycle", "conveyor.errors"} <= core
    typed = {name: _imports(name, type_checking=True) & core for name in core}
    for name in REFERS_TO_THE_QUEUE:
        typed[name] -= {"conveyor.queue", "conveyor.queue.base"}
    cycle = _cycle(typed)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) in (
        ["a", "b", "c", "a"],
        ["b", "c", "a", "b"],
        ["c", "a", "b", "c"],
    )
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


#: Imports each module named in its first argument in a child forked from an interpreter
#: that has loaded only the package ``conveyor`` (which any import of one of its modules
#: loads first) and, to save time, what it could of the other packages of its second
#: argument; prints the modules that failed, and their errors on stderr.
_IMPORT_ALONE = """
import contextlib, importlib, os, sys, traceback
for name in sys.argv[2].split():
    with contextlib.suppress(Exception):
        importlib.import_module(name)
import conveyor
failed = []
for name in sys.argv[1].split():
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            os._exit(0 if exc.name and not exc.name.startswith("conveyor") else 1)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print(" ".join(failed))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked child")
def test_every_module_imports_alone() -> None:
    """A module missing an optional dependency (``redis``, ``litestar`` ...) passes."""
    names = [n for n in MODULES if n.rpartition(".")[2] != "__main__"]
    outside: set[str] = set()
    for name in names:
        _imports(name, type_checking=False, outside=outside)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, " ".join(names), " ".join(sorted(outside))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
        check=False,
    )
    assert done.returncode == 0 and done.stdout.split() == [], done.stderr[-5000:]
