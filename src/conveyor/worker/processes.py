"""Sync task functions run in a child process, which the worker can stop.

A task handle made with ``process=True`` runs each attempt in a new child process, started
with :mod:`multiprocessing`'s ``spawn`` method (a fresh interpreter: no copy of the worker's
event loop, threads or connections). On a timeout, an abort or a shutdown the worker sends
the child SIGTERM, then SIGKILL after half of ``cancellation_hard_deadline_s``; nothing of
the attempt is left running, so its retry can start at once.

What crosses to the child is pickled: the job's keyword arguments, and a reduced context
(see :func:`child_context`); what comes back is the pickled result, or the text of the
exception raised. The function is found in the child by its module and qualified name, so
it must be defined at the top level of an importable module. A child also ends by itself
when its worker's process dies, and it ignores SIGINT (a Ctrl-C in the worker's terminal
reaches the whole process group; the worker stops its children itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import inspect
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from conveyor.errors import ConfigurationError, SerializationError
from conveyor.job import Job
from conveyor.worker.threads import ThreadPool

#: Every child is a fresh interpreter: forking a process that runs an event loop and
#: threads copies locks in whatever state they were in.
_CONTEXT = multiprocessing.get_context("spawn")

#: Seconds a child that sent its outcome gets to exit before it is terminated.
_EXIT_GRACE_S = 2.0


class InProcess:
    """A sync task function that the worker runs in a child process.

    Args:
        fn: The function, ``def fn(ctx, **kwargs)``, defined at the top level of a module.
        name: The task's name.

    Raises:
        ConfigurationError: When ``fn`` is async, or a child process could not find it by
            its module and qualified name (a nested function, a lambda, a callable object).
    """

    __slots__ = ("fn", "module", "name", "qualname")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = name
        where = f"task {name!r} runs in a child process (process=True)"
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"{where} and must be a plain def, not async def")
        self.module: str = getattr(fn, "__module__", None) or ""
        self.qualname: str = getattr(fn, "__qualname__", None) or ""
        try:
            found: Any = resolve(self.module, self.qualname)
        except Exception:
            found = None
        if found is not fn:
            raise ConfigurationError(
                f"{where}, which imports its function by name: define "
                f"{self.module or '?'}.{self.qualname or repr(fn)} at the top level of a "
                "module (not in a function, not a lambda)"
            )

    def __repr__(self) -> str:
        return f"InProcess<{self.module}.{self.qualname}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InProcess) and other.fn is self.fn

    def __hash__(self) -> int:
        return hash(self.fn)

    def __call__(self, ctx: Any, /, **kwargs: Any) -> Any:
        """Call the function here, in this process (for tests and composition)."""
        return self.fn(ctx, **kwargs)


def resolve(module: str, qualname: str) -> Callable[..., Any]:
    """The function named ``module.qualname``; a task handle there gives its function.

    Raises:
        ImportError: When the module does not import.
        AttributeError: When it has no such name.
    """
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    inner = getattr(target, "fn", None)
    if inner is not None and hasattr(target, "name") and hasattr(target, "job_options"):
        target = inner
    return target  # type: ignore[no-any-return]


def child_context(job: Job) -> dict[str, Any]:
    """The context a process-run task receives: the job as data, and where it runs.

    ``ctx["job"]`` is a copy of the job without its queue (its ``key``, ``kwargs``,
    ``attempts``, ``meta`` ... are there; ``update`` and the other storage methods are not
    available); ``ctx["queue_name"]`` and ``ctx["worker_id"]`` name the queue and the
    worker. The worker's own context (``worker``, ``queue``, what ``startup`` hooks added)
    stays in the worker's process.
    """
    detached = dataclasses.replace(job, queue=None)
    return {"job": detached, "queue_name": job.queue_name, "worker_id": job.worker_id}


class ChildError(Exception):
    """An exception raised by a task in its child process, as text (exceptions need not
    pickle).

    Attributes:
        type_name: The exception's class name.
        message: Its message.
        traceback: The formatted traceback, from the child.
    """

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}" if message else type_name)


class ArgumentsNotPicklableError(SerializationError):
    """An argument of a process-run task cannot be pickled for its child process; no retry
    can fix it."""


async def run_in_process(
    task: InProcess, job: Job, threads: ThreadPool, kill_after_s: float
) -> Any:
    """Run one attempt of ``job`` in a child process and return its result.

    The child is started and waited for by a thread of ``threads`` (the attempt's slot has
    one). When the awaiting task is cancelled, the child is sent SIGTERM, and SIGKILL
    ``kill_after_s`` seconds later; the cancellation is raised once it has exited.

    Raises:
        ArgumentsNotPicklableError: When the arguments cannot be pickled.
        ChildError: When the function raised, its result did not pickle, or the child
            exited without an outcome.
    """
    payload = _payload(task, job)
    child = _Child(task.name, payload)
    loop = asyncio.get_running_loop()
    data, exitcode = await threads.run(
        job.key,
        job.function,
        child.run,
        on_cancel=functools.partial(child.stop, loop, kill_after_s),
        hang_after=kill_after_s + 1.0,
    )
    if data is None:
        raise ChildError(
            "ChildProcessError",
            f"the child process of task {task.name!r} {_describe_exit(exitcode)} before returning",
        )
    outcome = pickle.loads(data)
    if outcome[0] == "ok":
        return outcome[1]
    _, type_name, message, formatted = outcome
    raise ChildError(type_name, message, formatted)


def _payload(task: InProcess, job: Job) -> bytes:
    kwargs = job.kwargs or {}
    try:
        return pickle.dumps((task.module, task.qualname, child_context(job), kwargs))
    except Exception as exc:
        blamed = None
        for name, value in kwargs.items():
            try:
                pickle.dumps(value)
            except Exception:
                blamed = name
                break
        what = "its arguments" if blamed else "its job (meta or arguments)"
        raise ArgumentsNotPicklableError(
            job.function,
            blamed,
            f"task {task.name!r} runs in a child process (process=True), so {what} must "
            f"pickle: {type(exc).__name__}: {exc}",
        ) from exc


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not start"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class _Child:
    """One attempt's child process: started and awaited in a thread, stopped from the loop."""

    def __init__(self, name: str, payload: bytes) -> None:
        self._name = name
        self._payload = payload
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._stopping = False

    def run(self) -> tuple[bytes | None, int | None]:
        """Start the child, wait for its outcome and its exit (in a thread)."""
        receiver, sender = _CONTEXT.Pipe(duplex=False)
        try:
            process = _CONTEXT.Process(
                target=_child_main,
                args=(sender, self._payload),
                name=f"conveyor-task-{self._name}",
            )
            with self._lock:  # so that a stop sees either no child or a started one
                if self._stopping:
                    return None, None
                process.start()
                self._process = process
            sender.close()
            ready = wait([receiver, process.sentinel])
            data = None
            if receiver in ready or receiver.poll():
                try:
                    data = receiver.recv_bytes()
                except (EOFError, OSError):
                    data = None  # it exited (or was stopped) without an outcome
            _reap(process, _EXIT_GRACE_S if data is not None else None)
            return data, process.exitcode
        finally:
            sender.close()
            receiver.close()

    def stop(self, loop: asyncio.AbstractEventLoop, kill_after_s: float) -> None:
        """Terminate the child now, and kill it if it is still there after a while."""
        with self._lock:
            self._stopping = True
            process = self._process
        if process is not None:
            process.terminate()
            loop.call_later(kill_after_s, process.kill)


def _reap(process: BaseProcess, grace: float | None) -> None:
    """Wait for the child's exit: ``grace`` seconds after its outcome (None: as long as it
    takes, for a child that is stopping), then terminate and kill it."""
    process.join(grace)
    if process.exitcode is None:
        process.terminate()
        process.join(1.0)
    if process.exitcode is None:
        process.kill()
        process.join()


def _child_main(sender: Connection, payload: bytes) -> None:
    """The child process: run the function, send back its outcome."""
    # Ctrl-C in a terminal signals the whole process group: the worker decides when its
    # children stop (after its grace period), not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    try:
        module, qualname, ctx, kwargs = pickle.loads(payload)
        fn = resolve(module, qualname)
        result = fn(ctx, **kwargs)
        try:
            data = pickle.dumps(("ok", result))
        except Exception as exc:
            raise SerializationError(
                ctx["job"].function,
                "result",
                f"a process-run task's result must pickle: {type(exc).__name__}: {exc}",
            ) from exc
    except BaseException as exc:  # SystemExit too: the attempt failed
        data = pickle.dumps(
            ("error", type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))
        )
    sender.send_bytes(data)
    sender.close()


def _exit_with_parent() -> None:
    """End this child when the worker's process dies, even by SIGKILL."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="conveyor-parent-watch", daemon=True).start()


__all__ = [
    "ArgumentsNotPicklableError",
    "ChildError",
    "InProcess",
    "child_context",
    "resolve",
    "run_in_process",
]
