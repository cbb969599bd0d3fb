"""Conveyor against SAQ, ARQ, streaQ, taskiq, pgqueuer and procrastinate, side by side.

Use ``bash benchmarks/run.sh`` (it builds the benchmark's own virtualenv first); this
script is what it runs. Each measurement runs in a fresh ``driver.py`` process (which
starts the worker process it measures); libraries are interleaved run by run, and each
figure is the median over the runs. Results go to ``benchmarks/results/`` and, for a full
run, into ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from adapters import GROUPS, adapter_class  # noqa: E402
from profile_report import report as profile_report  # noqa: E402

#: key -> (driver workload, driver options, label)
WORKLOADS: dict[str, tuple[str, dict[str, Any], str]] = {
    "enqueue": ("enqueue", {}, "enqueue 1 by 1"),
    "bulk": ("bulk", {}, "bulk enqueue"),
    "drain10": ("drain", {"concurrency": 10, "kind": "noop"}, "drain c=10"),
    "drain100": ("drain", {"concurrency": 100, "kind": "noop"}, "drain c=100"),
    "sleep100": ("drain", {"concurrency": 100, "kind": "sleep"}, "10 ms sleeps c=100"),
    "pickup": ("pickup", {}, "pickup latency"),
    "memory": ("memory", {}, "worker RSS"),
}

#: What the profile step looks at: (library, workload, whose process).
PROFILES = [
    ("Conveyor-redis", "drain100", "worker"),
    ("Conveyor-redis", "enqueue", "client"),
    ("Conveyor-redis", "bulk", "client"),
    ("Conveyor-postgres", "drain100", "worker"),
    ("Conveyor-postgres", "enqueue", "client"),
    ("Conveyor-postgres", "bulk", "client"),
]

BASELINE = {"redis": "SAQ-redis", "postgres": "SAQ-postgres"}
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, smaller N, short caps")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--n", type=int, help="jobs per workload (default 10,000)")
    parser.add_argument("--only", help="comma-separated library names (default: all)")
    parser.add_argument("--groups", default="redis,postgres")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile step")
    parser.add_argument(
        "--readme",
        choices=["auto", "yes", "no"],
        default="auto",
        help="write the tables into README.md (auto: only for a full run)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.n = args.n or (2000 if args.quick else 10_000)
    args.drain_cap = 4.0 if args.quick else 5.0
    args.enqueue_cap = 4.0 if args.quick else 5.0
    args.pickup_n = 100 if args.quick else 500
    args.pickup_cap = 3.0 if args.quick else 4.0
    return args


# Services


def redis_version(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        version = str(client.info("server")["redis_version"])
        client.close()
        return version
    except Exception as exc:
        print(f"Redis unreachable at {url}: {exc}; skipping the Redis group", file=sys.stderr)
        return None


def pg_dsn(base: str, database: str) -> str:
    """``base`` with its database replaced by ``database``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{database}"))


def create_database(base: str, name: str) -> str | None:
    """Create the benchmark's own database; its DSN, or None if PostgreSQL is down."""
    import psycopg

    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except Exception as exc:
        print(f"PostgreSQL unreachable at {base}: {exc}; skipping its group", file=sys.stderr)
        return None
    os.environ["BENCH_PG_VERSION"] = str(version)
    return pg_dsn(base, name)


def drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def prepare(dsn: str, libraries: list[str]) -> dict[str, str]:
    """Create the fixed tables of the PostgreSQL libraries; errors by library."""
    errors = {}
    for name in libraries:
        try:
            await adapter_class(name).prepare_database(dsn)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
    return errors


def sweep_redis(url: str, pattern: str) -> int:
    """Delete leftovers of this benchmark run (its tokens share one prefix)."""
    from adapters.base import delete_redis_keys

    return asyncio.run(delete_redis_keys(url, pattern))


# Measurements


def measure(
    args: argparse.Namespace,
    library: str,
    key: str,
    token: str,
    dsn: str,
    log: Path,
    profile: str | None = None,
) -> dict[str, Any]:
    workload, options, _label = WORKLOADS[key]
    cap = {"enqueue": args.enqueue_cap, "drain": args.drain_cap, "pickup": args.pickup_cap}
    n = args.pickup_n if workload == "pickup" else args.n
    command = [
        sys.executable,
        str(HERE / "driver.py"),
        library,
        workload,
        "--n",
        str(n),
        "--time-cap",
        str(cap.get(workload, 60)),
        "--timeout",
        str(args.drain_cap + 120),
        "--redis-url",
        args.redis_url,
        "--pg-dsn",
        dsn,
        "--workdir",
        str(RESULTS / "tmp"),
        "--log",
        str(log),
        "--token",
        token,
    ]
    for option, value in options.items():
        command += [f"--{option}", str(value)]
    if profile:
        command += ["--profile", profile]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.drain_cap + 240)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        result = (
            json.loads(lines[-1])
            if lines
            else {"ok": False, "error": f"driver exited {proc.returncode}: {proc.stderr[-300:]}"}
        )
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": "driver timed out"}
    result["seconds"] = time.monotonic() - started
    return result


def describe(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return "ERROR " + result.get("error", "?")
    if result.get("na"):
        return "n/a"
    if "p50" in result:
        return f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms ({result['count']} jobs)"
    if "idle_mib" in result:
        return f"idle {result['idle_mib']:.1f} MiB, busy {result['busy_mib']:.1f} MiB"
    text = f"{result['rate']:,.0f} jobs/s"
    if "cpu_ms" in result:
        text += f", {result['cpu_ms']:.3f} ms CPU/job"
    if result.get("capped"):
        text += f" (capped: {result['jobs']} jobs)"
    return text


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-by-field median of the successful runs."""
    good = [r for r in results if r.get("ok")]
    if not good:
        errors = [r.get("error", "?") for r in results]
        return {"ok": False, "error": errors[0] if errors else "not run"}
    if any(r.get("na") for r in good):
        return {"ok": True, "na": True}
    out: dict[str, Any] = {"ok": True, "runs": len(good)}
    for field in good[0]:
        values = [r[field] for r in good if field in r]
        if field == "capped":
            out[field] = any(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[field] = statistics.median(values)
    return out


# Tables


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


def cell(m: dict[str, Any], field: str, base: dict[str, Any] | None, fmt: Any) -> str:
    if not m.get("ok"):
        return "error"
    if m.get("na"):
        return "n/a"
    if field not in m:
        return "–"
    text = fmt(m[field])
    if m.get("capped") and field in ("rate",):
        text += "*"
    if base and base.get("ok") and not base.get("na") and field in base and base is not m:
        text += ratio(m[field], base[field])
    return text


def group_table(group: str, libraries: list[str], med: dict[tuple[str, str], Any]) -> str:
    baseline = BASELINE[group]

    def get(lib: str, key: str) -> dict[str, Any]:
        return med.get((lib, key), {"ok": False, "error": "not run"})

    def b(key: str) -> dict[str, Any] | None:
        return med.get((baseline, key))

    two = lambda v: f"{v:.2f}"  # noqa: E731
    three = lambda v: f"{v:.3f}"  # noqa: E731
    one = lambda v: f"{v:.1f}"  # noqa: E731
    header = [
        "library",
        "enqueue 1 by 1 (jobs/s)",
        "bulk enqueue (jobs/s)",
        "drain c=10 (jobs/s)",
        "drain c=100 (jobs/s)",
        "worker CPU/job c=10 (ms)",
        "worker CPU/job c=100 (ms)",
        "10 ms sleeps c=100 (jobs/s)",
        "pickup p50 (ms)",
        "pickup p95 (ms)",
        "pickup p99 (ms)",
        "RSS idle (MiB)",
        "RSS 100 running (MiB)",
    ]
    rows = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for lib in libraries:
        row = [
            lib,
            cell(get(lib, "enqueue"), "rate", b("enqueue"), fmt_rate),
            cell(get(lib, "bulk"), "rate", b("enqueue"), fmt_rate),
            cell(get(lib, "drain10"), "rate", b("drain10"), fmt_rate),
            cell(get(lib, "drain100"), "rate", b("drain100"), fmt_rate),
            cell(get(lib, "drain10"), "cpu_ms", b("drain10"), three),
            cell(get(lib, "drain100"), "cpu_ms", b("drain100"), three),
            cell(get(lib, "sleep100"), "rate", b("sleep100"), fmt_rate),
            cell(get(lib, "pickup"), "p50", b("pickup"), two),
            cell(get(lib, "pickup"), "p95", b("pickup"), two),
            cell(get(lib, "pickup"), "p99", b("pickup"), two),
            cell(get(lib, "memory"), "idle_mib", b("memory"), one),
            cell(get(lib, "memory"), "busy_mib", b("memory"), one),
        ]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def errors_table(med: dict[tuple[str, str], Any]) -> str:
    lines = []
    for (lib, key), m in sorted(med.items()):
        if not m.get("ok"):
            lines.append(f"- **{lib}**, {WORKLOADS[key][2]}: `{m.get('error')}`")
    return "\n".join(lines)


def check(
    label: str, value: float | None, ref: float | None, factor: float, op: str, unit: str = ""
) -> str:
    """One target row: Conveyor's figure against ``factor`` × the reference figure."""
    if value is None or ref is None:
        return f"| {label} | – | – | – | not measured |"
    goal = ref * factor
    met = value >= goal if op == ">=" else value <= goal if op == "<=" else value < goal
    achieved = f" ({value / ref:.2f}×)" if ref and factor != 0 and label.count("×") else ""
    return (
        f"| {label} | {value:,.2f}{unit}{achieved} | {ref:,.2f}{unit} | {op} {goal:,.2f}{unit} "
        f"| {'**met**' if met else '**NOT met**'} |"
    )


def targets(med: dict[tuple[str, str], Any]) -> str:
    def v(lib: str, key: str, field: str) -> float | None:
        m = med.get((lib, key))
        if not m or not m.get("ok") or m.get("na") or field not in m:
            return None
        return float(m[field])

    c, s = "Conveyor-redis", "SAQ-redis"
    cp, sp, pq = "Conveyor-postgres", "SAQ-postgres", "pgqueuer"
    rate, cpu = "rate", "cpu_ms"
    rows = [
        "| target | Conveyor | reference | goal | |",
        "|---|---:|---:|---:|---|",
        check(
            "Redis: drain c=100 ≥ 4× SAQ (jobs/s)",
            v(c, "drain100", rate),
            v(s, "drain100", rate),
            4,
            ">=",
        ),
        check(
            "Redis: drain c=10 ≥ 3× SAQ (jobs/s)",
            v(c, "drain10", rate),
            v(s, "drain10", rate),
            3,
            ">=",
        ),
        check(
            "Redis: 10 ms sleeps ≥ 3× SAQ (jobs/s)",
            v(c, "sleep100", rate),
            v(s, "sleep100", rate),
            3,
            ">=",
        ),
        check(
            "Redis: enqueue 1 by 1 ≥ 1.5× SAQ (jobs/s)",
            v(c, "enqueue", rate),
            v(s, "enqueue", rate),
            1.5,
            ">=",
        ),
        check(
            "Redis: bulk ≥ 10× SAQ's 1 by 1 (jobs/s)",
            v(c, "bulk", rate),
            v(s, "enqueue", rate),
            10,
            ">=",
        ),
        check(
            "Redis: pickup p50 ≤ SAQ's",
            v(c, "pickup", "p50"),
            v(s, "pickup", "p50"),
            1,
            "<=",
            " ms",
        ),
        check("Redis: pickup p99 < 5 ms", v(c, "pickup", "p99"), 5.0, 1, "<", " ms"),
        check(
            "Redis: idle RSS ≤ SAQ's",
            v(c, "memory", "idle_mib"),
            v(s, "memory", "idle_mib"),
            1,
            "<=",
            " MiB",
        ),
        check("Redis: worker CPU/job c=10 ≤ 0.4 ms", v(c, "drain10", cpu), 0.4, 1, "<=", " ms"),
        check("Redis: worker CPU/job c=100 ≤ 0.4 ms", v(c, "drain100", cpu), 0.4, 1, "<=", " ms"),
        check(
            "Postgres: drain c=100 ≥ 1.5× pgqueuer",
            v(cp, "drain100", rate),
            v(pq, "drain100", rate),
            1.5,
            ">=",
        ),
        check(
            "Postgres: drain c=100 ≥ 5× SAQ-postgres",
            v(cp, "drain100", rate),
            v(sp, "drain100", rate),
            5,
            ">=",
        ),
        check(
            "Postgres: enqueue 1 by 1 ≥ 2× SAQ-postgres",
            v(cp, "enqueue", rate),
            v(sp, "enqueue", rate),
            2,
            ">=",
        ),
        check(
            "Postgres: bulk ≥ pgqueuer's bulk", v(cp, "bulk", rate), v(pq, "bulk", rate), 1, ">="
        ),
        check("Postgres: pickup p50 < 5 ms", v(cp, "pickup", "p50"), 5.0, 1, "<", " ms"),
    ]
    return "\n".join(rows)


def machine(args: argparse.Namespace, libraries: list[str]) -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    versions = []
    for lib in libraries:
        cls = adapter_class(lib)
        try:
            version = cls.version()
        except Exception:
            version = "?"
        if lib.startswith("Conveyor"):
            version += f" (working tree at {commit})"
        note = f"; {cls.notes}" if cls.notes else ""
        versions.append(f"{lib} {version}{note}")
    import redis as redis_py

    return "\n".join(
        [
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {os.cpu_count()} × {cpu}, {mem_gib:.0f} GiB, {platform.platform()}",
            f"- Python {platform.python_version()}, redis-py {redis_py.__version__} (hiredis parser), "
            f"Redis {args.redis_server or '–'}, PostgreSQL {os.environ.get('BENCH_PG_VERSION', '–')}",
            f"- Load average (1 min) at start / end: {args.load_start:.2f} / {os.getloadavg()[0]:.2f} "
            "(other processes on the machine share its 2 cores with the benchmark)",
            f"- Runs: {args.runs} (median), N = {args.n:,}; caps: drain {args.drain_cap:.0f} s, "
            f"enqueue {args.enqueue_cap:.0f} s, pickup {args.pickup_n} jobs or {args.pickup_cap:.0f} s",
            "- Versions: " + "; ".join(versions),
        ]
    )


def render(
    args: argparse.Namespace,
    med: dict[tuple[str, str], Any],
    groups: dict[str, list[str]],
    profiles: dict[str, str],
) -> str:
    parts = ["### Setup", "", machine(args, [lib for libs in groups.values() for lib in libs]), ""]
    titles = {
        "redis": "Redis (ratios against SAQ-redis)",
        "postgres": "PostgreSQL, and SQLite for reference (ratios against SAQ-postgres)",
    }
    for group, libraries in groups.items():
        parts += [f"### {titles[group]}", "", group_table(group, libraries, med), ""]
    parts += [
        "`*` the library did not finish the N jobs within the cap: its rate is over "
        "the jobs it finished by then. Bulk ratios are against the baseline's 1-by-1 "
        "enqueue.",
        "",
    ]
    errors = errors_table(med)
    if errors:
        parts += ["### Errors", "", errors, ""]
    parts += ["### Targets", "", targets(med), ""]
    if profiles:
        parts += [
            "### Where Conveyor's CPU goes (cProfile)",
            "",
            "Each under cProfile with a CPU-time timer, one extra measurement. cProfile's "
            "own overhead inflates code that makes many small calls: read the shares, "
            "not the seconds.",
            "",
        ]
    for title, text in profiles.items():
        parts += [f"#### {title}", "", text, ""]
    return "\n".join(parts)


def write_readme(text: str) -> None:
    path = HERE / "README.md"
    body = path.read_text() if path.exists() else ""
    block = f"{README_START}\n{text}\n{README_END}"
    if README_START in body and README_END in body:
        head, rest = body.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        body = head + block + tail
    else:
        body = body.rstrip() + "\n\n## Results\n\n" + block + "\n"
    path.write_text(body)


# Main


def main() -> None:
    args = parse_args()
    args.load_start = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tmp").mkdir(exist_ok=True)
    run_id = uuid.uuid4().hex[:6]
    log = RESULTS / f"run-{run_id}.log"
    only = set(args.only.split(",")) if args.only else None
    keys = [k for k in args.workloads.split(",") if k]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        sys.exit(f"unknown workloads {unknown}; use {list(WORKLOADS)}")
    groups = {
        g: [lib for lib in GROUPS[g] if only is None or lib in only]
        for g in args.groups.split(",")
        if g
    }
    groups = {g: libs for g, libs in groups.items() if libs}
    args.redis_server = redis_version(args.redis_url) if "redis" in groups else None
    if "redis" in groups and args.redis_server is None:
        del groups["redis"]
    db_name = f"bench_{run_id}"
    dsn = create_database(args.pg_url, db_name) if "postgres" in groups else None
    if "postgres" in groups and dsn is None:
        del groups["postgres"]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    profiles: dict[str, str] = {}
    started = time.monotonic()
    try:
        if dsn:
            for lib, error in asyncio.run(prepare(dsn, groups["postgres"])).items():
                print(f"preparing {lib} failed: {error}", file=sys.stderr)
        for run in range(args.runs):
            for libraries in groups.values():
                for key in keys:
                    shift = run % len(libraries)
                    for lib in libraries[shift:] + libraries[:shift]:
                        token = f"bench_{run_id}_{uuid.uuid4().hex[:8]}"
                        result = measure(args, lib, key, token, dsn or args.pg_url, log)
                        results.setdefault((lib, key), []).append(result)
                        print(
                            f"[run {run + 1}/{args.runs} {time.monotonic() - started:5.0f}s] "
                            f"{WORKLOADS[key][2]:<20} {lib:<18} {describe(result)}",
                            flush=True,
                        )
        if not args.no_profile:
            for lib, key, what in PROFILES:
                group = "redis" if lib.endswith("redis") else "postgres"
                if lib not in groups.get(group, []) or key not in keys:
                    continue
                path = RESULTS / f"profile-{lib}-{key}-{run_id}.pstats"
                token = f"bench_{run_id}_{uuid.uuid4().hex[:8]}"
                result = measure(args, lib, key, token, dsn or args.pg_url, log, str(path))
                print(
                    f"[profile] {lib} {WORKLOADS[key][2]} under cProfile: {describe(result)}",
                    flush=True,
                )
                if result.get("ok") and path.exists():
                    profiles[f"{lib} {what}, {WORKLOADS[key][2]}"] = profile_report(str(path))
    finally:
        if dsn:
            drop_database(args.pg_url, db_name)
        if "redis" in groups:
            left = sweep_redis(args.redis_url, f"*bench_{run_id}_*")
            if left:
                print(f"swept {left} leftover Redis keys", file=sys.stderr)
    med = {k: median_of(v) for k, v in results.items()}
    text = render(args, med, groups, profiles)
    print("\n" + text)
    raw = {f"{lib}|{key}": runs for (lib, key), runs in results.items()}
    (RESULTS / f"results-{run_id}.json").write_text(json.dumps(raw, indent=1))
    (RESULTS / f"results-{run_id}.md").write_text(text)
    full = not args.quick and args.only is None and len(keys) == len(WORKLOADS)
    if args.readme == "yes" or (args.readme == "auto" and full):
        write_readme(text)
        print(f"\nwrote the results into {HERE / 'README.md'}")
    print(f"total {time.monotonic() - started:.0f} s; raw results in {RESULTS}; log {log}")


if __name__ == "__main__":
    main()
