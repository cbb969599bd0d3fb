"""The JSON API: the data of the pages, and the actions, described by ``/api/openapi.json``."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conveyor.admin.state import MAX_JOBS_PAGE
from conveyor.web import forms
from conveyor.web.actions import Actions
from conveyor.web.console import PACKAGE_DIR, Console
from conveyor.web.errors import WebError, json_body
from conveyor.web.views import RANGES, RunFilters, int_param, job_list, range_of, text_param

#: The largest request body the API reads.
MAX_BODY = 1 << 20


class Api:
    """The API handlers of one console."""

    def __init__(self, console: Console, actions: Actions) -> None:
        self.console = console
        self.actions = actions

    async def _body(self, request: Request) -> dict[str, Any]:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise WebError(413, "too_large", f"the request body is over {MAX_BODY} bytes")
        data = await request.body()
        if len(data) > MAX_BODY:
            raise WebError(413, "too_large", f"the request body is over {MAX_BODY} bytes")
        body = json_body(data)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise WebError(400, "bad_request", "the request body must be a JSON object")
        return body

    # Reading

    async def me(self, request: Request) -> Response:
        """Who is signed in, and the CSRF token their requests carry."""
        principal = await self.console.require(request)
        nonce, new = self.console.gate.csrf_nonce(request)
        response = JSONResponse(
            {
                "name": principal.name,
                "role": principal.role,
                "via": principal.via,
                "csrf_token": self.console.gate.csrf_token(nonce, principal),
            }
        )
        if new:
            self.console._cookie(
                response, request, self.console.gate.csrf_cookie_name(request), nonce
            )
        return response

    async def overview(self, request: Request) -> Response:
        """Counts of the last 24 hours, the queues now, and live workers."""
        await self.console.require(request)
        overview = await self.console.admin.overview(
            queue=text_param(request.query_params, "queue")
        )
        return JSONResponse(overview.to_dict())

    async def throughput(self, request: Request) -> Response:
        """Runs per interval by outcome, and per-task statistics."""
        await self.console.require(request)
        window, bucket = RANGES[range_of(request.query_params)]
        until = time.time()
        data = await self.console.admin.throughput(
            until - window,
            bucket,
            function=text_param(request.query_params, "function"),
            until=until,
            queue=text_param(request.query_params, "queue"),
        )
        return JSONResponse(data.to_dict())

    async def runs(self, request: Request) -> Response:
        """A page of runs, newest first, filtered."""
        await self.console.require(request)
        filters = RunFilters.from_params(request.query_params)
        return JSONResponse((await filters.page(self.console)).to_dict())

    async def run(self, request: Request) -> Response:
        """One run in full."""
        await self.console.require(request)
        detail = await self.console.admin.run(request.path_params["run_id"])
        return JSONResponse(detail.to_dict())

    async def logs(self, request: Request) -> Response:
        """A page of a run's log lines after ``cursor``."""
        await self.console.require(request)
        params = request.query_params
        page = await self.console.admin.logs(
            request.path_params["run_id"],
            cursor=int_param(params, "cursor", 0, 0, 10**12),
            limit=int_param(params, "limit", 500, 1, 1000),
            level=text_param(params, "level"),
            q=text_param(params, "q"),
        )
        return JSONResponse(page.to_dict())

    async def jobs(self, request: Request) -> Response:
        """Jobs in one state: ``queued`` (and scheduled), ``running`` or ``failed``."""
        await self.console.require(request)
        params = request.query_params
        state = params.get("state") or "queued"
        page, counts = await job_list(
            self.console,
            state,
            int_param(params, "offset", 0, 0, 10**9),
            int_param(params, "limit", 50, 1, MAX_JOBS_PAGE),
            text_param(params, "queue"),
        )
        body = {
            "state": state,
            "jobs": [job.to_dict() for job in page.jobs],
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
            "counts": counts,
            "truncated": page.truncated,
        }
        return JSONResponse(body)

    async def available_jobs(self, request: Request) -> Response:
        """Every task that can be enqueued, with its parameters."""
        await self.console.require(request)
        jobs = [job.to_dict() for job in await self.console.admin.available_jobs()]
        return JSONResponse({"available_jobs": jobs, "total_jobs": len(jobs)})

    async def cron(self, request: Request) -> Response:
        """Every cron schedule with its next and last runs."""
        await self.console.require(request)
        entries = await self.console.admin.cron()
        return JSONResponse({"cron_jobs": [entry.to_dict() for entry in entries]})

    async def live(self, request: Request) -> Response:
        """Liveness, without credentials: the console answers."""
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def ready(self, request: Request) -> Response:
        """Readiness, without credentials: every queue's backend answers a read."""
        ready = await self.console.admin.ready()
        return JSONResponse(
            {"status": "ok" if ready else "unavailable"},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def health(self, request: Request) -> Response:
        """200 when every queue has a live worker, else 503."""
        await self.console.require(request)
        health = await self.console.admin.health()
        body = {
            "status": "ok" if health.healthy else "unavailable",
            "healthy": health.healthy,
            "workers": health.workers,
            "queues": {queue.name: queue.alive for queue in health.queues},
            "report_age_s": {queue.name: queue.last_report_age_s for queue in health.queues},
            "hung": {queue.name: queue.hung for queue in health.queues},
        }
        return JSONResponse(body, status_code=200 if health.healthy else 503)

    # Acting

    async def enqueue(self, request: Request) -> Response:
        """Enqueue a task: ``{"name", "args", "scheduled_at", "queue"}``."""
        principal = await self.console.require_action(request)
        body = await self._body(request)
        name = body.get("name", body.get("job_name"))
        if not isinstance(name, str) or not name:
            raise WebError(
                422, "bad_request", "name: the job to enqueue is required", {"name": "required"}
            )
        args = body.get("args", body.get("job_args"))
        if args is not None and not isinstance(args, dict):
            raise WebError(
                422, "arguments", "args must be a JSON object", {"args": "not an object"}
            )
        queue = body.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise WebError(400, "bad_request", "queue must be a string", {"queue": "not a string"})
        scheduled = forms.scheduled_from_json(body)
        key = await self.actions.enqueue(principal, name, args, scheduled, queue)
        status = "scheduled" if scheduled and scheduled > time.time() else "queued"
        return JSONResponse({"key": key, "job_key": key, "status": status}, status_code=201)

    async def abort(self, request: Request) -> Response:
        """Abort a queued or running job: ``{"reason"}`` optional."""
        principal = await self.console.require_action(request)
        body = await self._body(request)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise WebError(
                400, "bad_request", "reason must be a string", {"reason": "not a string"}
            )
        key = request.path_params["key"]
        status = await self.actions.abort(principal, key, reason)
        return JSONResponse({"key": key, "status": status})

    async def retry(self, request: Request) -> Response:
        """Run a failed or aborted job again."""
        principal = await self.console.require_action(request)
        key = await self.actions.retry(principal, request.path_params["key"])
        return JSONResponse({"key": key, "status": "queued"})

    async def bulk(self, request: Request) -> Response:
        """One action on several jobs: ``{"action": "abort"|"retry", "keys": [...]}``."""
        principal = await self.console.require_action(request)
        body = await self._body(request)
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise WebError(
                400, "bad_request", "keys must be a list of job keys", {"keys": "invalid"}
            )
        results = await self.actions.bulk(principal, str(body.get("action", "")), keys)
        return JSONResponse({"results": results, "ok": all(r["ok"] for r in results)})

    # The description

    @cached_property
    def _document(self) -> Mapping[str, Any]:
        with (PACKAGE_DIR / "openapi.json").open(encoding="utf-8") as handle:
            document: dict[str, Any] = json.load(handle)
        return document

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI 3.1 document of this API, with this console's address."""
        await self.console.require(request)
        document = copy.deepcopy(dict(self._document))
        document["servers"] = [{"url": self.console.root(request) or "/"}]
        document["info"]["title"] = f"{self.console.title} API"
        return JSONResponse(document)


__all__ = ["MAX_BODY", "Api"]
