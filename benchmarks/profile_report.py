"""Where a profiled worker's CPU time goes: self time grouped by component, and the
heaviest functions. Reads a ``cProfile`` dump written with a CPU-time timer.

Usage: ``profile_report.py FILE.pstats`` (``run.py`` calls :func:`report`).
"""

from __future__ import annotations

import pstats
import sys
from collections import defaultdict

#: (component, substrings of the file name or of a builtin's name), first match wins.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("json (stdlib)", ("/json/", "_json")),
    ("redis-py + hiredis", ("/redis/", "hiredis")),
    ("psycopg", ("/psycopg", "psycopg_")),
    ("sqlite3", ("sqlite3",)),
    ("logging", ("/logging/",)),
    ("asyncio event loop", ("/asyncio/", "selectors.py", "select.epoll", "_asyncio", "socket")),
    ("uuid", ("/uuid.py",)),
    ("dataclasses/enum/typing", ("/dataclasses.py", "/enum.py", "/typing.py")),
]


def component(filename: str, name: str) -> str:
    """The component a function belongs to."""
    where = filename if filename != "~" else name
    if "/benchmarks/" in where and "site-packages" not in where:
        return "benchmark harness"
    if "/conveyor/" in where:
        module = where.split("/conveyor/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"conveyor.{module}"
    for label, needles in COMPONENTS:
        if any(needle in where for needle in needles):
            return label
    if filename == "~":
        return "other builtins"
    return "other Python"


def _label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    short = filename.split("site-packages/", 1)[-1].split("/src/", 1)[-1]
    short = short.split("/lib/python3.11/", 1)[-1]
    return f"{short}:{line} {name}"


def report(path: str, top: int = 10) -> str:
    """A Markdown report of the profile at ``path``."""
    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1e-9
    by_component: dict[str, float] = defaultdict(float)
    for (filename, _line, name), entry in raw.items():
        callers = entry[4]
        if filename == "~" and callers:
            # A builtin (isinstance, str.encode ...) counts for the code that called it.
            for (c_file, _c_line, c_name), c_entry in callers.items():
                by_component[component(c_file, c_name)] += c_entry[2]
            by_component[component(filename, name)] += entry[2] - sum(
                c[2] for c in callers.values()
            )
        else:
            by_component[component(filename, name)] += entry[2]
    lines = [
        f"Total profiled CPU: {total:.2f} s. Self time by component, builtins counted for "
        "their caller (Conveyor's modules listed one by one):",
        "",
        "| component | self CPU | share |",
        "|---|---:|---:|",
    ]
    for name, seconds in sorted(by_component.items(), key=lambda kv: -kv[1]):
        if seconds / total < 0.005:
            continue
        lines.append(f"| {name} | {seconds:.2f} s | {seconds / total:.1%} |")
    lines += [
        "",
        f"Top {top} functions by self time:",
        "",
        "| function | calls | self | cumulative |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for key, (_cc, nc, tt, ct, _callers) in ranked:
        lines.append(f"| `{_label(key)}` | {nc} | {tt / total:.1%} | {ct / total:.1%} |")
    conveyor = [(key, entry) for key, entry in raw.items() if "/conveyor/" in key[0]]
    conveyor.sort(key=lambda kv: -kv[1][3])
    lines += [
        "",
        "Conveyor functions by cumulative time (includes what they call):",
        "",
        "| function | calls | cumulative |",
        "|---|---:|---:|",
    ]
    for key, (_cc, nc, _tt, ct, _callers) in conveyor[:top]:
        lines.append(f"| `{_label(key)}` | {nc} | {ct / total:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sys.argv[1]))
