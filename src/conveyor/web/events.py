"""Live updates by server-sent events: overview counters, the run list, a run's log tail.

Each stream reads the admin service at most once per ``poll_interval`` (one second by
default) and sends only what changed. The browser's ``EventSource`` reconnects by itself
when the server restarts; the log tail sets each event's id to its cursor, so a
reconnected tail resumes where it stopped (``Last-Event-ID``). Streams end when the
client goes away or the console closes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conveyor.errors import RunNotFoundError
from conveyor.web.console import Console
from conveyor.web.errors import WebError
from conveyor.web.pages import LOG_LEVELS
from conveyor.web.views import (
    RunFilters,
    charts,
    int_param,
    overview_counts,
    range_of,
    runs_context,
    runs_signature,
    text_param,
    version,
)

logger = logging.getLogger("conveyor.web")

#: Seconds without an event after which a comment keeps proxies from closing the stream.
KEEPALIVE_S = 15.0
#: Milliseconds the browser waits before reconnecting.
RETRY_MS = 2000
#: Seconds between two chart renders of one overview stream, at least; and at most.
CHART_MIN_S, CHART_MAX_S = 5.0, 60.0
#: Log lines one tick of a tail sends at most.
TAIL_BATCH = 2000


@dataclass
class Event:
    """One server-sent event."""

    name: str
    data: Any
    id: str | None = None

    def encode(self) -> str:
        """The wire format."""
        lines = [f"event: {self.name}"]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.extend(f"data: {line}" for line in json.dumps(self.data).splitlines())
        return "\n".join(lines) + "\n\n"


#: One read of a stream: the events to send and whether the stream is over.
Tick = Callable[[], Awaitable[tuple[list[Event], bool]]]


class Events:
    """The live streams of one console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _response(self, request: Request, tick: Tick) -> Response:
        return StreamingResponse(
            self._drive(request, tick),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _drive(self, request: Request, tick: Tick) -> AsyncIterator[str]:
        console = self.console
        yield f"retry: {RETRY_MS}\n\n"
        last_sent = time.monotonic()
        while not console.closing.is_set():
            try:
                events, done = await tick()
            except Exception as exc:
                logger.warning("live stream %s: %s", request.url.path, exc, exc_info=True)
                events, done = [Event("problem", {"message": "reading the queue failed"})], False
            for event in events:
                yield event.encode()
                last_sent = time.monotonic()
            if done:
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            if await console.wait_closing(console.poll_interval):
                return

    async def overview(self, request: Request) -> Response:
        """Counters, workers and (every few seconds, when runs moved) the charts."""
        await self.console.require(request)
        range_name = range_of(request.query_params)
        seen = request.query_params.get("v")
        state: dict[str, Any] = {"chart_key": None, "chart_at": 0.0, "sent": None}

        async def tick() -> tuple[list[Event], bool]:
            overview, counters = await overview_counts(self.console)
            workers = self.console.fragment("_workers.html", {"overview": overview}, request)
            regions = {"workers": workers}
            now = time.monotonic()
            chart_key = (counters["completed"], counters["failed"], counters["running"])
            age = now - state["chart_at"]
            if state["sent"] is not None and (
                (chart_key != state["chart_key"] and age >= CHART_MIN_S) or age >= CHART_MAX_S
            ):
                drawn = await charts(self.console, range_name)
                regions["charts"] = self.console.fragment(
                    "_charts.html", {"charts": drawn}, request
                )
                state["chart_key"], state["chart_at"] = chart_key, now
            current = version((counters, workers))
            if state["sent"] is None:
                state["chart_key"], state["chart_at"] = chart_key, now
                if current == seen:
                    state["sent"] = current
                    return [], False
            if current == state["sent"] and "charts" not in regions:
                return [], False
            state["sent"] = current
            return [Event("update", {"counters": counters, "regions": regions})], False

        return self._response(request, tick)

    async def runs(self, request: Request) -> Response:
        """The run list of the Runs page (with its filters) whenever it changes."""
        await self.console.require(request)
        filters = RunFilters.from_params(request.query_params)
        sent: list[str | None] = [request.query_params.get("v")]

        async def tick() -> tuple[list[Event], bool]:
            context = await runs_context(self.console, request, filters)
            current = version(runs_signature(context["page"]))
            if current == sent[0]:
                return [], False
            sent[0] = current
            html = self.console.fragment("_runs_list.html", context, request)
            total = context["page"].total
            return [
                Event("update", {"counters": {"runs": total}, "regions": {"runs": html}})
            ], False

        return self._response(request, tick)

    async def logs(self, request: Request) -> Response:
        """A run's new log lines as they are written, then ``end`` when the run is over."""
        await self.console.require(request)
        run_id = request.path_params["run_id"]
        params = request.query_params
        level = params.get("level", "").upper()
        if level not in LOG_LEVELS:
            raise WebError(400, "bad_request", f"unknown log level {level!r}")
        q = text_param(params, "q")
        cursor = int_param(params, "cursor", 0, 0, 10**12)
        resumed = request.headers.get("last-event-id", "")
        if resumed.isdigit():
            cursor = max(cursor, int(resumed))
        position = [cursor]

        async def tick() -> tuple[list[Event], bool]:
            events: list[Event] = []
            sent = 0
            while True:
                try:
                    page = await self.console.admin.logs(
                        run_id, cursor=position[0], limit=500, level=level or None, q=q
                    )
                except RunNotFoundError:
                    return [Event("end", {"status": "gone"})], True
                position[0] = page.next_cursor
                if page.lines:
                    html = self.console.fragment("_log_lines.html", {"lines": page.lines}, request)
                    data = {"html": html, "cursor": page.next_cursor, "count": len(page.lines)}
                    events.append(Event("lines", data, id=str(page.next_cursor)))
                    sent += len(page.lines)
                if not page.more or sent >= TAIL_BATCH:
                    break
            if page.run_status != "running" and not page.more:
                events.append(Event("end", {"status": page.run_status}, id=str(position[0])))
                return events, True
            return events, False

        return self._response(request, tick)


__all__ = ["KEEPALIVE_S", "RETRY_MS", "Event", "Events"]
