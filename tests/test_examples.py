"""The examples run, end to end, as their docstrings and the README say.

Each example is copied into a fresh directory (its SQLite file lands there, not in the
repository) and run with ``python``, with workers started by ``python -m conveyor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def missing_pieces() -> str | None:
    """Why the examples cannot run here yet, or None."""
    try:
        import conveyor.backends.sqlite
    except ImportError:
        return "the SQLite backend (conveyor.backends.sqlite) is not here yet"
    import conveyor

    wanted = ("Queue", "Worker", "CronJob")
    if not all(hasattr(conveyor, name) for name in wanted):
        return f"conveyor/__init__.py does not export {', '.join(wanted)} yet"
    return None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of ``examples/`` in a fresh directory, which the programs run from."""
    reason = missing_pieces()
    if reason is not None:
        pytest.skip(reason)
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("*.db*"))
    return tmp_path


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes started by a test; killed at its end if still running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()


async def start(
    processes: list[asyncio.subprocess.Process], cwd: Path, *args: str
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    processes.append(process)
    return process


async def wait_for_line(process: asyncio.subprocess.Process, needle: str) -> None:
    assert process.stdout is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, f"exited before printing {needle!r}:\n{''.join(seen)}"
        seen.append(line)
        if needle in line:
            return


async def run_to_end(processes: list[asyncio.subprocess.Process], cwd: Path, *args: str) -> str:
    process = await start(processes, cwd, *args)
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    text = output.decode()
    assert process.returncode == 0, text
    return text


async def test_saq_readme_example_end_to_end(
    workdir: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    worker = await start(processes, workdir, "-m", "conveyor", "examples.saq_readme.settings", "-v")
    await wait_for_line(worker, "started on queue")

    output = await run_to_end(processes, workdir, "examples/saq_readme.py")

    assert "enqueue + refresh: {'x': 1}" in output
    assert "apply: {'x': 2}" in output
    assert "map: [{'x': 3}, {'x': 4}]" in output
    assert "scheduled: {'x': 5}" in output
    late = re.search(r"started (-?[\d.]+)s after its time", output)
    assert late is not None and float(late.group(1)) >= -0.5, output  # not run early

    worker.send_signal(signal.SIGTERM)
    worker_output, _ = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, worker_output.decode()
    printed = worker_output.decode()
    assert "<Database>" in printed  # before_process saw the startup hook's db
    assert "i am a cron job" in printed  # the producer ran > 10 s: two 5 s slots passed
    assert (workdir / "saq-example.db").exists()


async def test_simple_example_runs_alone(
    workdir: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    output = await run_to_end(processes, workdir, "examples/simple.py")
    assert "1 + 2 = 3" in output
    assert "map: [0, 2, 4, 6, 8]" in output


async def test_simple_example_settings_run_as_a_worker(
    workdir: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    code = (
        "import asyncio\n"
        "from examples.simple import queue\n"
        "async def main():\n"
        "    async with queue:\n"
        "        await queue.enqueue('add', a=20, b=22, key='answer')\n"
        "asyncio.run(main())\n"
    )
    await run_to_end(processes, workdir, "-c", code)
    await run_to_end(processes, workdir, "-m", "conveyor", "examples.simple.settings", "--burst")
    check = (
        "import asyncio\n"
        "from examples.simple import queue\n"
        "async def main():\n"
        "    async with queue:\n"
        "        job = await queue.job('answer')\n"
        "        print('result', job.status.value, job.result)\n"
        "asyncio.run(main())\n"
    )
    assert "result complete 42" in await run_to_end(processes, workdir, "-c", check)


# The README quotes the tour and gives the quickstart that CI runs.

README = ROOT / "README.md"
QUOTE = re.compile(r"<!-- examples/tour\.py: (\w+) -->\n```python\n(.*?)```", re.S)
REGION = re.compile(r"^[ \t]*# --8<-- (\w+)\n(.*?)^[ \t]*# --8<--$", re.S | re.M)


def quickstart_lines() -> list[str]:
    block = re.search(r"<!-- quickstart[^>]*-->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README has no quickstart block"
    return block.group(1).strip().splitlines()


def test_readme_quotes_the_tour_exactly() -> None:
    regions = {
        name: textwrap.dedent(body).strip()
        for name, body in REGION.findall((EXAMPLES / "tour.py").read_text())
    }
    quotes = dict(QUOTE.findall(README.read_text()))
    assert set(quotes) == {"tasks", "settings", "produce"}
    for name, quoted in quotes.items():
        assert quoted.strip() == regions[name], f"README block {name!r} differs from tour.py"


def test_the_quickstart_is_two_lines_demo_then_tests() -> None:
    demo, tests = quickstart_lines()
    assert demo.endswith("conveyor demo") and "pip install -e ." in demo
    assert '".[dev]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_line() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    printed = subprocess.run(
        [str(script), "--print-test-command"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip() == quickstart_lines()[1]


# The supported versions stated in the README and the deployment guide are the declared ones,
# and the Pythons are the ones CI runs.

SUPPORTED_DOCS = (README, ROOT / "docs" / "how-to" / "deployment.md")
REQUIREMENT = re.compile(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(.*)")


def stated_versions(doc: Path) -> tuple[str, dict[str, str]]:
    """The Python row and the package ranges of ``doc``'s "Supported versions" section."""
    section = doc.read_text().split("## Supported versions\n", 1)[1].split("\n## ", 1)[0]
    pythons = re.search(r"^\| Python \| ([^|]*) \|", section, re.M)
    assert pythons is not None, f"{doc.name} states no Python versions"
    ranges = dict(re.findall(r"^\| `([\w.-]+)`[^|]*\| `([^`]*)` \|", section, re.M))
    return pythons.group(1).strip(), ranges


def test_the_stated_versions_are_the_declared_and_tested_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: dict[str, set[str]] = {}
    extras = [deps for name, deps in project["optional-dependencies"].items() if name != "dev"]
    for requirement in [*project["dependencies"], *(dep for deps in extras for dep in deps)]:
        match = REQUIREMENT.fullmatch(requirement)
        assert match is not None, requirement
        declared.setdefault(match.group(1).lower(), set()).add(match.group(2))
    assert all(len(specs) == 1 for specs in declared.values()), declared
    expected = {name: spec for name, (spec,) in declared.items()}
    classifiers = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]]
    pythons = [v for v in classifiers if re.fullmatch(r"3\.\d+", v)]
    assert project["requires-python"] == f">={pythons[0]}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"python{pythons[0]} -m venv .venv" in quickstart_lines()[0]
    assert f"for version in {' '.join(pythons[1:])}; do" in ci
    for doc in SUPPORTED_DOCS:
        stated_pythons, ranges = stated_versions(doc)
        assert stated_pythons == ", ".join(pythons), doc.name
        assert ranges == expected, doc.name


async def test_tour_runs(workdir: Path, processes: list[asyncio.subprocess.Process]) -> None:
    output = await run_to_end(processes, workdir, "examples/tour.py")
    for line in (
        "enqueue: complete 3",
        "apply: 5",
        "map: [2, 4]",
        "deduplicated: True True",
        "scheduled: 8",
        "task: sent 'Hi' to ada@example.com",
    ):
        assert line in output, output
