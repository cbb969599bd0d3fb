"""What the pages show, gathered from the admin service; shared by the pages and the live
streams, which re-render the same pieces."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from starlette.requests import HTTPConnection

from conveyor.admin.models import Overview, RunPage, RunSummary
from conveyor.admin.state_models import JobPage
from conveyor.web.charts import bar_chart, timeline
from conveyor.web.console import Console
from conveyor.web.errors import WebError

#: Overview chart ranges: name to (window, bucket width) in seconds.
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, 120),
    "24h": (86400, 3600),
    "7d": (7 * 86400, 6 * 3600),
}
DEFAULT_RANGE = "24h"
RUNS_PAGE = 50
#: The lists of the Jobs page, and the job statuses each shows (see ``Admin.jobs``).
JOB_LISTS: dict[str, tuple[str, ...]] = {
    "queued": ("queued",),
    "scheduled": ("scheduled",),
    "running": ("active", "aborting"),
    "failed": ("failed",),
    "aborted": ("aborted",),
}
#: The lists whose jobs wait (abort is offered) and those that ended (retry is offered).
WAITING_LISTS = ("queued", "scheduled", "running")


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds.

    Raises:
        WebError: 400 naming the parameter.
    """
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise WebError(400, "bad_request", f"{name} must be a whole number", {name: text}) from None
    if not low <= value <= high:
        raise WebError(
            400, "bad_request", f"{name} must be {low} to {high}", {name: f"out of range: {value}"}
        )
    return value


def text_param(params: Mapping[str, str], name: str) -> str | None:
    """A text query parameter, None when empty."""
    value = params.get(name, "").strip()
    return value or None


async def overview_counts(console: Console) -> tuple[Overview, dict[str, int]]:
    """The overview and its counters (the cards)."""
    overview = await console.admin.overview()
    counters = {
        "completed": overview.completed,
        "failed": overview.failed,
        "queued": overview.queued,
        "running": overview.running,
        "scheduled": overview.scheduled,
        "workers": len(overview.workers),
    }
    return overview, counters


async def charts(console: Console, range_name: str) -> dict[str, Markup]:
    """The throughput and failure charts of a range."""
    window, bucket = RANGES[range_name]
    now = time.time()
    # Align buckets to their width so that a chart does not shift at every refresh.
    until = (now // bucket + 1) * bucket
    data = await console.admin.throughput(until - window, bucket, until=until)
    return {
        "throughput": bar_chart(
            data.buckets,
            [("complete", ("complete",)), ("retried", ("retried",)), ("running", ("running",))],
            bucket_s=bucket,
            title="Runs started per interval, by outcome",
        ),
        "failures": bar_chart(
            data.buckets,
            [("failed", ("failed",)), ("aborted", ("aborted",))],
            bucket_s=bucket,
            title="Failed and aborted runs per interval",
        ),
        "truncated": Markup("1") if data.truncated else Markup(""),
    }


def range_of(params: Mapping[str, str]) -> str:
    """The chart range asked for.

    Raises:
        WebError: 400 for an unknown range.
    """
    name = params.get("range") or DEFAULT_RANGE
    if name not in RANGES:
        raise WebError(400, "bad_request", f"range must be one of {', '.join(RANGES)}")
    return name


@dataclass
class RunFilters:
    """The filters of the Runs page (and of ``/api/runs``)."""

    status: str | None
    function: str | None
    q: str | None
    key: str | None
    queue: str | None
    offset: int
    limit: int

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunFilters:
        """Read the query parameters."""
        return cls(
            status=text_param(params, "status"),
            function=text_param(params, "function"),
            q=text_param(params, "q"),
            key=text_param(params, "key"),
            queue=text_param(params, "queue"),
            offset=int_param(params, "offset", 0, 0, 10**9),
            limit=int_param(params, "limit", RUNS_PAGE, 1, 1000),
        )

    def query(self, **changes: Any) -> dict[str, Any]:
        """The query parameters, with some changed."""
        values = {
            "status": self.status,
            "function": self.function,
            "q": self.q,
            "key": self.key,
            "queue": self.queue,
            "offset": self.offset or None,
            "limit": self.limit if self.limit != RUNS_PAGE else None,
        }
        values.update(changes)
        return values

    async def page(self, console: Console) -> RunPage:
        """The runs matching the filters."""
        return await console.admin.runs(
            status=self.status,
            function=self.function,
            q=self.q,
            key=self.key,
            queue=self.queue,
            offset=self.offset,
            limit=self.limit,
        )


@dataclass
class RunGroup:
    """The runs of one task on the current page, for the timeline."""

    function: str
    runs: list[RunSummary]
    counts: dict[str, int]
    timeline: Markup


def run_groups(console: Console, request: HTTPConnection, runs: list[RunSummary]) -> list[RunGroup]:
    """The page's runs grouped by task, each with a timeline over the page's time span."""
    if not runs:
        return []
    now = time.time()
    start = min(r.started or now for r in runs)
    end = max((r.finished or now) if r.status != "running" else now for r in runs)
    end = max(end, start + 1)
    by_function: dict[str, list[RunSummary]] = {}
    for run in runs:
        by_function.setdefault(run.function, []).append(run)

    def href(run: RunSummary) -> str:
        return console.url(request, f"/runs/{run.run_id}")

    groups = []
    for function in sorted(by_function):
        members = by_function[function]
        groups.append(
            RunGroup(
                function=function,
                runs=members,
                counts=dict(Counter(r.status for r in members)),
                timeline=timeline(members, start, end, href),
            )
        )
    return groups


async def runs_context(
    console: Console, request: HTTPConnection, filters: RunFilters
) -> dict[str, Any]:
    """What the Runs page's live region shows."""
    page = await filters.page(console)
    functions = sorted(console.admin.functions)
    return {
        "page": page,
        "filters": filters,
        "groups": run_groups(console, request, page.runs),
        "functions": functions,
        "prev_url": console.url(
            request, "/runs", **filters.query(offset=max(filters.offset - filters.limit, 0) or None)
        )
        if filters.offset > 0
        else None,
        "next_url": console.url(
            request, "/runs", **filters.query(offset=filters.offset + filters.limit)
        )
        if filters.offset + filters.limit < page.total
        else None,
        "multi_queue": len(console.admin.queues) > 1,
    }


def version(value: Any) -> str:
    """A short hash of what a page shows, so a live stream skips what the page already has."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


async def job_list(
    console: Console, name: str, offset: int, limit: int, queue: str | None = None
) -> tuple[JobPage, dict[str, int]]:
    """A page of one list of the Jobs page, and how many jobs each list holds.

    Raises:
        WebError: 400 for a list that does not exist.
    """
    if name not in JOB_LISTS:
        raise WebError(
            400, "bad_request", f"unknown job list {name!r}; use one of {', '.join(JOB_LISTS)}"
        )
    page = await console.admin.jobs(JOB_LISTS[name], offset, limit, queue)
    counts = {
        list_name: sum(page.totals[status] for status in statuses)
        for list_name, statuses in JOB_LISTS.items()
    }
    return page, counts


def runs_signature(page: RunPage) -> tuple[Any, ...]:
    """What changes on the Runs page when its list changes."""
    return (page.total, tuple((r.run_id, r.status) for r in page.runs))


__all__ = [
    "DEFAULT_RANGE",
    "JOB_LISTS",
    "RANGES",
    "WAITING_LISTS",
    "RunFilters",
    "RunGroup",
    "charts",
    "int_param",
    "job_list",
    "overview_counts",
    "range_of",
    "run_groups",
    "runs_context",
    "runs_signature",
    "text_param",
    "version",
]
