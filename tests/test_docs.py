"""The documentation site: every code block is a file that runs, type-checks or parses.

* Every fenced block of ``docs/`` is one ``--8<-- "path[:section]"`` line (pymdownx.snippets)
  naming a file of ``examples/`` that exists, with that section; every file of
  ``examples/docs/`` is quoted by some page.
* Every complete program (a ``.py`` file with ``if __name__ == "__main__":``) runs in a copy
  of its directory, against the SQLite or memory default, and prints the lines of its
  ``.out`` file, when it has one, in order. The tutorial's producer and history scripts run
  against a real ``conveyor worker.settings`` process; the PostgreSQL program runs when a
  server answers (skipped otherwise, failed under ``CI=true``).
* Every Python file quoted by the docs type-checks with ``mypy --strict``; the others are
  imported, so their module-level code runs.
* Every ``conveyor ...`` command line of a shell snippet or a deployment file parses with
  the real command-line parsers; extras named in ``pip install`` exist; the SQL printer runs.
* ``mkdocs build --strict`` passes (skipped without mkdocs, failed under ``CI=true``).
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mypy_support import run_mypy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
SNIPPETS = EXAMPLES / "docs"
IN_CI = os.environ.get("CI") == "true"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[A-Za-z][-_0-9A-Za-z]*))?"$')
MAIN_GUARD = re.compile(r'^if __name__ == "__main__":', re.M)
#: Programs that cannot run alone, with the test that runs them.
NOT_ALONE = {
    "tutorial/produce.py": "test_tutorial_producer_and_history_against_a_worker",
    "tutorial/history.py": "test_tutorial_producer_and_history_against_a_worker",
    "backends/postgres_transactional.py": "test_postgres_program",
    "migrate/saq_queues.py": "test_saq_queues_program",
}
PROGRAM_TIMEOUT_S = 60


# What the pages include.


def code_blocks() -> Iterator[tuple[Path, int, list[str]]]:
    """Every fenced block of every page: (page, line number, the lines inside)."""
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text().splitlines()
        index = 0
        while index < len(lines):
            match = FENCE.match(lines[index])
            if match is None:
                index += 1
                continue
            fence, start, body = match["fence"], index + 1, []
            index += 1
            while index < len(lines) and lines[index].strip() != fence:
                body.append(lines[index])
                index += 1
            yield page, start, body
            index += 1


def inclusions() -> list[tuple[Path, int, Path, str | None]]:
    """Every snippet inclusion: (page, line, file, section)."""
    found = []
    for page, line, body in code_blocks():
        for text in body:
            match = INCLUDE.match(text.strip())
            if match is not None:
                found.append((page, line, ROOT / match["path"], match["section"]))
    return found


def included_files() -> set[Path]:
    return {path.resolve() for _, _, path, _ in inclusions()}


def hidden(path: Path) -> bool:
    """Caches and other tools' files (``.ruff_cache``, ``__pycache__`` ...)."""
    return any(part.startswith((".", "__")) for part in path.relative_to(SNIPPETS).parts)


def snippet_files(suffix: str) -> list[Path]:
    return sorted(p for p in SNIPPETS.rglob(f"*{suffix}") if not hidden(p))


def programs() -> list[Path]:
    return [p for p in snippet_files(".py") if MAIN_GUARD.search(p.read_text())]


def name_of(path: Path) -> str:
    return path.relative_to(SNIPPETS).as_posix()


def test_every_code_block_is_one_included_file() -> None:
    problems = []
    for page, line, body in code_blocks():
        where = f"{page.relative_to(ROOT)}:{line}"
        if len(body) != 1 or INCLUDE.match(body[0].strip()) is None:
            problems.append(f'{where}: a code block must be one --8<-- "file" line: {body}')
    assert not problems, "\n".join(problems)
    assert inclusions(), "no page includes a snippet"


def test_included_files_and_sections_exist() -> None:
    problems = []
    for page, line, path, section in inclusions():
        where = f"{page.relative_to(ROOT)}:{line}"
        if not path.is_file():
            problems.append(f"{where}: {path.relative_to(ROOT)} does not exist")
            continue
        if not path.resolve().is_relative_to(EXAMPLES):
            problems.append(f"{where}: {path.relative_to(ROOT)} is not under examples/")
        if section is not None:
            text = path.read_text()
            for marker in (f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"):
                if marker not in text:
                    problems.append(f"{where}: {path.relative_to(ROOT)} lacks {marker!r}")
    assert not problems, "\n".join(problems)


def test_every_snippet_file_is_quoted_by_a_page() -> None:
    quoted = included_files()
    # .out files are the expected output of programs; the docs show some of them.
    unused = [
        name_of(p)
        for p in sorted(SNIPPETS.rglob("*"))
        if p.is_file()
        and not hidden(p)
        and p.suffix != ".out"
        and p.name != "ruff.toml"
        and p.resolve() not in quoted
    ]
    assert not unused, f"files of examples/docs/ that no page quotes: {unused}"


# Complete programs.


def copy_of(directory: Path, tmp_path: Path) -> Path:
    """A copy of a snippet directory, where programs run and leave their files."""
    target = tmp_path / directory.name
    shutil.copytree(directory, target, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    return target


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PYTHONPATH", None)
    return env


def run(args: list[str], cwd: Path, timeout: float = PROGRAM_TIMEOUT_S, **env: str) -> str:
    """Run a command to its end; its combined output, or a failure that shows it."""
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=environment(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish within {timeout}s:\n{exc.stdout!r}\n{exc.stderr!r}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited with {done.returncode}:\n{output}"
    return done.stdout


def assert_prints_expected(program: Path, stdout: str) -> None:
    """The lines of ``program``'s ``.out`` file appear in ``stdout``, in order."""
    expected_file = program.with_suffix(".out")
    if not expected_file.exists():
        return
    printed = iter(stdout.splitlines())
    for expected in expected_file.read_text().splitlines():
        assert any(line == expected for line in printed), (
            f"{name_of(program)} did not print {expected!r} (in order); it printed:\n{stdout}"
        )


@pytest.mark.parametrize("name", [name_of(p) for p in programs() if name_of(p) not in NOT_ALONE])
def test_program_runs(name: str, tmp_path: Path) -> None:
    program = SNIPPETS / name
    workdir = copy_of(program.parent, tmp_path)
    stdout = run([sys.executable, program.name], workdir)
    assert_prints_expected(program, stdout)


def test_programs_that_cannot_run_alone_have_a_test() -> None:
    for name, test in NOT_ALONE.items():
        assert (SNIPPETS / name).is_file(), name
        assert test in globals(), f"{name}: no test named {test}"


async def test_tutorial_producer_and_history_against_a_worker(tmp_path: Path) -> None:
    workdir = copy_of(SNIPPETS / "tutorial", tmp_path)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conveyor",
        "worker.settings",
        "-v",
        cwd=workdir,
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert worker.stdout is not None
        seen: list[str] = []
        while not any("started on queue" in line for line in seen):
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line, "the worker exited:\n" + "".join(seen)
            seen.append(line.decode())
        for script in ("produce.py", "history.py"):
            stdout = await asyncio.to_thread(run, [sys.executable, script], workdir)
            assert_prints_expected(SNIPPETS / "tutorial" / script, stdout)
        runs = await asyncio.to_thread(
            run, [sys.executable, "-m", "conveyor", "runs", "worker.settings", "--json"], workdir
        )
        assert '"function": "send_welcome"' in runs
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), 40)
        assert worker.returncode == 0, "".join(seen) + output.decode()
        assert "stopped" in output.decode()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


def test_postgres_program(tmp_path: Path) -> None:
    from conveyor.testing.backends import postgres_url
    from conveyor.testing.fixtures import require_backend

    require_backend("postgres")
    program = SNIPPETS / "backends" / "postgres_transactional.py"
    schema = f"docs_{uuid.uuid4().hex[:10]}"
    code = (
        "import asyncio, postgres_transactional as p\n"
        f"asyncio.run(p.main({postgres_url()!r}, {schema!r}))\n"
    )
    try:
        stdout = run([sys.executable, "-c", code], copy_of(program.parent, tmp_path))
        assert_prints_expected(program, stdout)
    finally:
        drop = (
            "import psycopg\n"
            f"with psycopg.connect({postgres_url()!r}, autocommit=True) as conn:\n"
            f"    conn.execute('DROP SCHEMA IF EXISTS {schema} CASCADE')\n"
        )
        subprocess.run([sys.executable, "-c", drop], check=False, timeout=30)


async def test_saq_queues_program(capsys: pytest.CaptureFixture[str]) -> None:
    """Run in this process (the tested source), on a queue name and a schema of its own."""
    import importlib.util

    import psycopg
    from redis.asyncio import Redis

    from conveyor.testing.backends import postgres_url, redis_url
    from conveyor.testing.fixtures import require_backend

    require_backend("redis", "postgres")
    program = SNIPPETS / "migrate" / "saq_queues.py"
    spec = importlib.util.spec_from_file_location("saq_queues_program", program)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    token = uuid.uuid4().hex[:10]
    name, schema = f"docs-{token}", f"docs_{token}"
    database_url = f"{postgres_url()}?options=-c%20search_path%3D{schema}"
    try:
        await module.with_redis(redis_url(), name)
        await module.with_postgres(database_url, name)
        assert module.queue_for("kafka://localhost") is None
        assert isinstance(module.queue_for(redis_url()), module.RedisQueue)
        printed = capsys.readouterr().out.splitlines()
        assert printed == (SNIPPETS / "migrate" / "saq_queues.out").read_text().splitlines()[:2]
        async with await psycopg.AsyncConnection.connect(postgres_url()) as conn:
            cursor = await conn.execute(f'SELECT count(*) FROM "{schema}".jobs')
            assert await cursor.fetchone() == (1,)
    finally:
        client = Redis.from_url(redis_url())
        async for key in client.scan_iter(match=f"conveyor:{{{name}}}:*"):
            await client.unlink(key)
        await client.aclose()
        async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_tutorial_tests_pass(tmp_path: Path) -> None:
    workdir = copy_of(SNIPPETS / "tutorial", tmp_path)
    run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "test_shop.py",
        ],
        workdir,
    )


def test_settings_callable_runs_a_worker(tmp_path: Path) -> None:
    workdir = copy_of(SNIPPETS / "deploy", tmp_path)
    url = f"sqlite:///{workdir / 'shop.db'}"
    command = [sys.executable, "-m", "conveyor", "shop_settings.settings", "--burst"]
    run(command, workdir, QUEUE_URL=url)


# Modules: type-checked, and imported.


def quoted_python() -> list[Path]:
    return sorted(p for p in included_files() if p.suffix == ".py")


def test_quoted_python_type_checks(tmp_path: Path) -> None:
    pytest.importorskip("mypy.api")
    by_directory: dict[Path, list[Path]] = {}
    for path in quoted_python():
        by_directory.setdefault(path.parent, []).append(path)
    assert by_directory, "no Python file is quoted"
    failures = []
    for directory, files in sorted(by_directory.items()):
        # One run per directory: two directories may each have their own worker.py.
        output, status = run_mypy(files, tmp_path / "mypy-cache")
        if status != 0:
            failures.append(f"{directory.relative_to(ROOT)}:\n{output}")
    assert not failures, "\n".join(failures)


def test_modules_import(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        "for path in sys.argv[1:]:\n"
        "    runpy.run_path(path, run_name='docs_snippet')\n"
    )
    by_directory: dict[Path, list[str]] = {}
    for path in snippet_files(".py"):
        if path not in programs() and not path.name.startswith("test_"):
            by_directory.setdefault(path.parent, []).append(path.name)
    for directory, names in sorted(by_directory.items()):
        run([sys.executable, "-c", code, *names], copy_of(directory, tmp_path / "m"))


# Commands: shell snippets and deployment files.


def parse_conveyor(args: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    """``conveyor ARGS`` parsed by the real parsers, or why it does not parse."""
    from conveyor.admin_cli import add_admin_commands
    from conveyor.cli import ADMIN_COMMANDS, build_parser
    from conveyor.web.cli import build_parser as web_parser

    if args and args[0] == "web":
        parser, rest = web_parser(), args[1:]
    elif args and args[0] in ADMIN_COMMANDS:
        parser, rest = argparse.ArgumentParser(prog="conveyor"), args
        add_admin_commands(parser.add_subparsers(dest="command", required=True))
    else:
        parser, rest = build_parser(), args
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return parser.parse_args(rest), None
        except SystemExit as exc:
            return None, errors.getvalue().strip() or f"exit {exc.code}"


def check_settings_path(path: str, directory: Path) -> str | None:
    """When the settings module is in the repository (next to the snippet, or from its
    root), it must define the attribute."""
    module, _, attribute = path.rpartition(".")
    relative = module.replace(".", "/") + ".py"
    found = [base / relative for base in (directory, ROOT) if (base / relative).is_file()]
    if not found:
        return None  # a module of the reader's application (app.worker ...)
    source = found[0]
    if not re.search(rf"^(def |async def )?{re.escape(attribute)}\b", source.read_text(), re.M):
        return f"{source.relative_to(ROOT)} defines no {attribute!r}"
    return None


def shell_commands(script: Path) -> Iterator[list[str]]:
    """The simple commands of a shell snippet: comments dropped, lists and pipelines split,
    redirections cut off."""
    for line in script.read_text().splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        redirected = False
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "|", "&"):
                if command:
                    yield command
                command, redirected = [], False
            elif token in (">", ">>", "<", "2>", "2>&1"):
                redirected = True
            elif not redirected:
                command.append(token)


def conveyor_args(words: list[str]) -> list[str] | None:
    """The arguments of a ``conveyor`` or ``python -m conveyor`` command, else None."""
    if words and Path(words[0]).name == "conveyor":
        return words[1:]
    if words[:3] == ["python", "-m", "conveyor"]:
        return words[3:]
    return None


def pyproject_extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def check_command(words: list[str], directory: Path) -> list[str]:
    """What is wrong with one command of a snippet."""
    problems: list[str] = []
    args = conveyor_args(words)
    if args is not None:
        parsed, problem = parse_conveyor(args)
        if problem is not None:
            problems.append(f"conveyor {shlex.join(args)}: {problem}")
        if parsed is not None:
            problems.extend(p for p in [check_settings_path(parsed.settings, directory)] if p)
    if words[:2] == ["pip", "install"]:
        for word in words[2:]:
            extras = re.fullmatch(r"conveyor\[([a-z,]+)\]", word)
            if extras:
                unknown = set(extras.group(1).split(",")) - pyproject_extras()
                if unknown:
                    problems.append(f"pip install {word}: no extra {sorted(unknown)}")
    script = words[1] if words[:1] == ["python"] and len(words) == 2 else None
    if script is not None and script.endswith(".py") and not (directory / script).is_file():
        problems.append(f"python {script}: no such file next to the snippet")
    return problems


def test_shell_snippets_are_valid_bash() -> None:
    for script in snippet_files(".sh"):
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{name_of(script)}: {done.stderr}"


def test_shell_snippet_commands_parse() -> None:
    problems: list[str] = []
    checked = 0
    for script in snippet_files(".sh"):
        for words in shell_commands(script):
            checked += conveyor_args(words) is not None
            problems.extend(f"{name_of(script)}: {p}" for p in check_command(words, script.parent))
    assert checked >= 10, f"only {checked} conveyor command lines found"
    assert not problems, "\n".join(problems)


def test_postgres_sql_printer_runs() -> None:
    commands = [
        words
        for words in shell_commands(SNIPPETS / "backends" / "postgres.sh")
        if words[:3] == ["python", "-m", "conveyor.backends.postgres"]
    ]
    assert len(commands) == 2, commands
    for words in commands:
        stdout = run([sys.executable, *words[1:]], ROOT)
        assert stdout.startswith("BEGIN;") and stdout.rstrip().endswith("COMMIT;"), stdout
        assert '"jobs"' in stdout or "jobs." in stdout, stdout


def deployment_commands() -> Iterator[tuple[str, list[str]]]:
    """The command lines of the deployment files: systemd, Compose and Kubernetes."""
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; mkdocs needs it

    deploy = SNIPPETS / "deploy"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(deploy / "conveyor-worker.service")
    yield "conveyor-worker.service", shlex.split(unit["Service"]["ExecStart"])
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        if "command" in service:
            yield f"compose {name}", list(service["command"])
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD"] and "conveyor" in test[1]:
            yield f"compose {name} healthcheck", list(test[1:])
    kubernetes = yaml.safe_load((deploy / "worker-deployment.yaml").read_text())
    for container in kubernetes["spec"]["template"]["spec"]["containers"]:
        yield f"kubernetes {container['name']}", list(container["command"])


def test_deployment_files_commands_parse() -> None:
    pytest.importorskip("yaml")
    found = list(deployment_commands())
    assert len(found) >= 5, found
    problems: list[str] = []
    for where, words in found:
        if conveyor_args(words) is None:
            continue
        problems.extend(f"{where}: {p}" for p in check_command(words, SNIPPETS / "deploy"))
    assert not problems, "\n".join(problems)


def test_environment_variables_named_in_the_docs_exist() -> None:
    named = set()
    for path in [*DOCS.rglob("*.md"), *SNIPPETS.rglob("*")]:
        if path.is_file() and path.suffix in (".md", ".sh", ".yaml", ".service", ".py"):
            named |= set(re.findall(r"\bCONVEYOR_[A-Z_]+\b", path.read_text()))
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "conveyor").rglob("*.py"))
    missing = sorted(name for name in named if name not in source)
    assert named, "the docs name no CONVEYOR_ variable"
    assert not missing, f"the docs name variables Conveyor does not read: {missing}"


# The site.


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        try:
            import mkdocs  # noqa: F401
        except ImportError:
            if IN_CI:
                pytest.fail('mkdocs is not installed (CI=true): pip install -e ".[dev]"')
            pytest.skip("mkdocs is not installed; pip install mkdocs 'mkdocstrings[python]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(NO_MKDOCS_2_WARNING="1"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "reference" / "queue" / "index.html").is_file()
