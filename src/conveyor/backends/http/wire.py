"""The HTTP queue's wire format: one JSON request per backend operation, and its answer.

A request is one ``POST`` whose JSON body names the operation (``kind``), the queue it is
for (``queue``) and the operation's arguments, by name, beside them::

    {"kind": "claim", "queue": "default", "worker_id": "w1", "limit": 5, "lease_s": 60,
     "now": 1765000000.0}

The answer is ``{"result": ...}``, or ``{"error": {"type": ..., "message": ...}}``. Records
(:class:`~conveyor.backends.base.JobRow`, :class:`~conveyor.backends.base.Transition`,
:class:`~conveyor.backends.base.Lease` ...) travel as objects of their fields, fencing tokens
included, so that the backend behind the proxy checks ownership as it does for a local
caller. A payload that is text travels as a JSON string; bytes as ``{"b64": "..."}``.

:data:`OPERATIONS` says, for each kind, whether the client may send it again after a reply
was lost (see :class:`Operation`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from conveyor.backends.base import (
    Backend,
    Lease,
    LogLine,
    NewJob,
    Payload,
    RunEnd,
    RunFilter,
    RunRecord,
    Transition,
)

T = TypeVar("T")

#: The error types of an answer, and the HTTP status the proxy sends them with.
ERROR_STATUS = {
    "bad_request": 400,  # unreadable body, unknown kind or arguments
    "unauthorized": 401,  # the application's auth hook refused the call
    "forbidden": 403,
    "not_served": 403,  # a kind this proxy does not serve (``drop`` by default)
    "unknown_queue": 404,
    "backend": 503,  # the proxied backend failed (BackendError)
    "internal": 500,
}

#: The fields of the records that hold payloads (bytes or str).
_PAYLOAD_FIELDS = frozenset({"payload", "detail", "extra", "info"})


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One backend operation as the proxy serves it.

    Attributes:
        call: Runs the operation on the proxied backend with the request's arguments and
            returns a JSON-ready result.
        retry: Whether the client may send the request again when the reply was lost: the
            operation changes nothing, or sending it twice leaves the same state and the
            same answer. Claims, enqueues, finishes and aborts are never sent twice.
        waits: The argument that says how long the operation may wait (capped by the
            proxy and the client), if any.
    """

    call: Callable[[Backend, dict[str, Any]], Awaitable[Any]]
    retry: bool
    waits: str | None = None


def pack_payload(value: Payload) -> Any:
    """A payload as JSON: text as it is, bytes as ``{"b64": ...}``."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def unpack_payload(value: Any) -> Payload:
    """The payload that :func:`pack_payload` packed."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if not isinstance(value, str):
        raise TypeError(f"a payload is a string or {{'b64': ...}}, not {type(value).__name__}")
    return value


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} cannot travel over the HTTP queue's wire")


def encode(value: Any) -> bytes:
    """JSON of ``value``: records as objects of their fields, bytes packed."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def record(cls: type[T], data: dict[str, Any]) -> T:
    """A record (``JobRow``, ``Transition`` ...) from the object :func:`encode` made of it.

    Raises:
        TypeError: For a field the record does not have, or a missing one.
    """
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name in _PAYLOAD_FIELDS:
            value = unpack_payload(value)
        elif name == "run" and value is not None:
            value = record(RunEnd, value)
        fields[name] = value
    return cls(**fields)


def records(cls: type[T], items: list[dict[str, Any]]) -> list[T]:
    """:func:`record` of each item."""
    return [record(cls, item) for item in items]


def _text_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return value


# The operations. Each takes the proxied backend and the request's arguments.


async def _enqueue(b: Backend, a: dict[str, Any]) -> Any:
    return await b.enqueue(records(NewJob, a["jobs"]))


# Claims, renewals and recoveries for remote workers are never vouched for: the proxy's
# process does not run those workers, so its restart must not read as their death (their
# leases end only by expiry). Whatever the client sends, vouch is False.


async def _claim(b: Backend, a: dict[str, Any]) -> Any:
    limit, lease_s, now = int(a["limit"]), float(a["lease_s"]), float(a["now"])
    return await b.claim(a["worker_id"], limit, lease_s, now, vouch=False)


async def _wait_for_work(b: Backend, a: dict[str, Any]) -> Any:
    await b.wait_for_work(float(a["timeout"]))


async def _renew(b: Backend, a: dict[str, Any]) -> Any:
    leases = records(Lease, a["leases"])
    return await b.renew(a["worker_id"], leases, float(a["lease_s"]), float(a["now"]), vouch=False)


async def _finish(b: Backend, a: dict[str, Any]) -> Any:
    return await b.finish(records(Transition, a["transitions"]))


async def _update(b: Backend, a: dict[str, Any]) -> Any:
    return await b.update(a["key"], unpack_payload(a["payload"]), a.get("token"))


async def _abort(b: Backend, a: dict[str, Any]) -> Any:
    return await b.abort(a["key"], unpack_payload(a["payload"]), float(a["now"]))


async def _recover(b: Backend, a: dict[str, Any]) -> Any:
    limit, lease_s, now = int(a["limit"]), float(a["lease_s"]), float(a["now"])
    return await b.recover(a["worker_id"], limit, lease_s, now, vouch=False)


async def _get(b: Backend, a: dict[str, Any]) -> Any:
    return await b.get(_text_list(a["keys"]))


async def _list_jobs(b: Backend, a: dict[str, Any]) -> Any:
    statuses = a["statuses"]
    wanted = None if statuses is None else _text_list(statuses)
    return await b.list_jobs(wanted, int(a["offset"]), int(a["limit"]))


async def _count(b: Backend, a: dict[str, Any]) -> Any:
    return await b.count(_text_list(a["statuses"]))


async def _wait_for_finish(b: Backend, a: dict[str, Any]) -> Any:
    await b.wait_for_finish(_text_list(a["keys"]), float(a["timeout"]))


async def _expire(b: Backend, a: dict[str, Any]) -> Any:
    return await b.expire(float(a["now"]), int(a["limit"]))


async def _put_worker(b: Backend, a: dict[str, Any]) -> Any:
    await b.put_worker(a["worker_id"], unpack_payload(a["info"]), float(a["ttl_s"]))


async def _delete_worker(b: Backend, a: dict[str, Any]) -> Any:
    await b.delete_worker(a["worker_id"])


async def _workers(b: Backend, a: dict[str, Any]) -> Any:
    return await b.workers()


async def _record_runs(b: Backend, a: dict[str, Any]) -> Any:
    await b.record_runs(records(RunRecord, a["starts"]), records(RunEnd, a["ends"]))


async def _list_runs(b: Backend, a: dict[str, Any]) -> Any:
    runs, total = await b.list_runs(
        record(RunFilter, a["filters"]), int(a["offset"]), int(a["limit"])
    )
    return [runs, total]


async def _get_run(b: Backend, a: dict[str, Any]) -> Any:
    return await b.get_run(a["run_id"])


async def _append_logs(b: Backend, a: dict[str, Any]) -> Any:
    await b.append_logs(records(LogLine, a["lines"]))


async def _read_logs(b: Backend, a: dict[str, Any]) -> Any:
    return await b.read_logs(a["run_id"], int(a["after_seq"]), int(a["limit"]))


async def _purge_runs(b: Backend, a: dict[str, Any]) -> Any:
    return await b.purge_runs(int(a["before_ms"]), int(a["limit"]))


async def _drop(b: Backend, a: dict[str, Any]) -> Any:
    await b.drop()


#: Every operation the proxy can serve, by kind. ``hello`` (the queue's name and the
#: proxied backend's capabilities, read at connect) is answered by the proxy itself.
#:
#: Sent again after a lost reply (``retry``): the reads; ``wait_for_*`` (a wait may end
#: early anyway); ``renew`` (extending a held lease to ``now + lease_s`` twice is extending
#: it once, and a lease found lost stays lost); ``update`` (storing the same payload twice,
#: under the same token); the worker records (set and delete by id); ``record_runs`` (a
#: stored start is ignored, an end sets the same fields). Never sent twice: ``enqueue`` (a
#: job enqueued by the lost attempt reads as a duplicate the second time), ``claim`` and
#: ``recover`` (the first attempt's jobs would stay claimed with nobody running them),
#: ``finish`` (the second attempt is refused by the token the first one released),
#: ``abort`` (it answers the status before), ``append_logs`` (lines twice), and the
#: deletions ``expire``, ``purge_runs`` and ``drop`` (their counts).
OPERATIONS: dict[str, Operation] = {
    "enqueue": Operation(_enqueue, retry=False),
    "claim": Operation(_claim, retry=False),
    "wait_for_work": Operation(_wait_for_work, retry=True, waits="timeout"),
    "renew": Operation(_renew, retry=True),
    "finish": Operation(_finish, retry=False),
    "update": Operation(_update, retry=True),
    "abort": Operation(_abort, retry=False),
    "recover": Operation(_recover, retry=False),
    "get": Operation(_get, retry=True),
    "list_jobs": Operation(_list_jobs, retry=True),
    "count": Operation(_count, retry=True),
    "wait_for_finish": Operation(_wait_for_finish, retry=True, waits="timeout"),
    "expire": Operation(_expire, retry=False),
    "put_worker": Operation(_put_worker, retry=True),
    "delete_worker": Operation(_delete_worker, retry=True),
    "workers": Operation(_workers, retry=True),
    "record_runs": Operation(_record_runs, retry=True),
    "list_runs": Operation(_list_runs, retry=True),
    "get_run": Operation(_get_run, retry=True),
    "append_logs": Operation(_append_logs, retry=False),
    "read_logs": Operation(_read_logs, retry=True),
    "purge_runs": Operation(_purge_runs, retry=False),
    "drop": Operation(_drop, retry=False),
}

#: The kinds a proxy serves unless told otherwise: all but ``drop``, which deletes the
#: queue's whole storage and is for tests.
DEFAULT_KINDS = frozenset(OPERATIONS) - {"drop"}
#: What a producer needs to enqueue jobs and read or wait for their results (``enqueue``,
#: ``apply``, ``map``, ``job``, ``count``, ``info``): for a proxy whose clients must not run,
#: change or abort jobs.
PRODUCER_KINDS = frozenset({"enqueue", "get", "list_jobs", "count", "wait_for_finish", "workers"})
