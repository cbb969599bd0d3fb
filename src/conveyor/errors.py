"""Every exception Conveyor raises derives from :class:`ConveyorError`.

The tree::

    ConveyorError
    ├── ConfigurationError          settings, URLs, options that cannot work
    │   ├── InvalidUrlError         a queue URL that cannot be used (SAQ's name)
    │   │   └── UnsupportedURLError a queue URL whose scheme no backend handles
    │   ├── MissingDependencyError  an optional extra is not installed
    │   ├── SettingsImportError     a settings path that does not import
    │   └── CronExpressionError     a cron expression that is malformed or never fires
    │                               (also a ValueError, as SAQ raises)
    ├── SerializationError          job arguments or results that cannot be serialized
    ├── ArgumentsError              arguments that do not fit a task's signature
    ├── UnknownFunctionError        a job names a function the worker does not have
    ├── JobError                    ``apply``/``map``: the job did not complete
    ├── JobNotFoundError            no job with that key (also a RuntimeError, as SAQ raises)
    ├── LeaseLostError              a write about an attempt whose lease another owner took
    ├── BackendError                the storage engine failed or is unreachable
    └── AdminError                  a request the admin service cannot carry out as asked
        ├── RunNotFoundError        no run with that id (never existed, or purged)
        ├── UnknownQueueError       a queue name the admin service does not serve
        └── JobStateError           an action the job's current status does not allow

Errors carry the data they speak of as attributes, so callers can act on them without
parsing messages. Where SAQ raises a built-in exception, Conveyor's error is that
exception too, so SAQ code that catches ``ValueError`` or ``RuntimeError`` keeps working;
SAQ's own ``saq.errors`` names (``InvalidUrlError``, ``MissingDependencyError``) are here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.job import Job


class ConveyorError(Exception):
    """The root of every error raised by Conveyor."""


class ConfigurationError(ConveyorError):
    """A setting, URL or option cannot work as given."""


class InvalidUrlError(ConfigurationError):
    """A queue URL that cannot be used: SAQ's ``saq.errors.InvalidUrlError``.

    Catching it catches every URL error of :meth:`conveyor.Queue.from_url`, including
    :class:`UnsupportedURLError`.
    """


class UnsupportedURLError(InvalidUrlError):
    """A queue URL whose scheme no backend handles.

    Attributes:
        url: The URL as given.
        supported: The schemes that are supported.
    """

    def __init__(self, url: str, supported: Iterable[str]) -> None:
        self.url = url
        self.supported = sorted(supported)
        scheme = url.split(":", 1)[0] if ":" in url else url
        super().__init__(
            f"unsupported queue URL {url!r}: scheme {scheme!r} is not one of "
            f"{', '.join(s + '://' for s in self.supported)}"
        )


class MissingDependencyError(ConfigurationError):
    """An optional dependency is needed but not installed.

    Attributes:
        package: The missing import name.
        extra: The Conveyor extra that installs it.
    """

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed: "
            f'pip install "conveyor[{extra}]"'
        )


class SettingsImportError(ConfigurationError):
    """A worker settings path that does not resolve.

    Attributes:
        path: The dotted path as given.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot load worker settings {path!r}: {reason}")


class CronExpressionError(ConfigurationError, ValueError):
    """A cron expression that is malformed or can never fire.

    Also a ``ValueError``, the error SAQ raises for an invalid cron.

    Attributes:
        expression: The expression as given.
        field: The name of the offending field, when known.
    """

    def __init__(self, expression: str, reason: str, field: str | None = None) -> None:
        self.expression = expression
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"invalid cron expression {expression!r}{where}: {reason}")


class SerializationError(ConveyorError):
    """A value could not be serialized or deserialized.

    Attributes:
        function: The task the value belongs to.
        argument: The name of the argument (or ``"result"``) that failed, when known.
    """

    def __init__(self, function: str, argument: str | None, reason: str) -> None:
        self.function = function
        self.argument = argument
        what = f"argument {argument!r}" if argument else "a value"
        super().__init__(f"cannot serialize {what} of job {function!r}: {reason}")


class ArgumentsError(ConveyorError):
    """Arguments that do not fit a task's signature.

    Attributes:
        function: The task name.
        errors: A mapping of parameter name to what is wrong with it.
    """

    def __init__(self, function: str, errors: dict[str, str]) -> None:
        self.function = function
        self.errors = errors
        detail = "; ".join(f"{name}: {why}" for name, why in errors.items())
        super().__init__(f"arguments do not fit {function!r}: {detail}")


class UnknownFunctionError(ConveyorError):
    """A job names a function that the worker does not know.

    Attributes:
        function: The name the job asked for.
        known: The names the worker has registered.
    """

    def __init__(self, function: str, known: Iterable[str]) -> None:
        self.function = function
        self.known = sorted(known)
        super().__init__(
            f"no function named {function!r} is registered; "
            f"known functions: {', '.join(self.known) or '(none)'}"
        )


class JobError(ConveyorError):
    """Raised by ``apply`` and ``map`` when a job fails or is aborted.

    Attributes:
        job: The job in its final state.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(
            f"job {job.function!r} (key {job.key!r}) ended {job.status.value}: {job.error}"
        )


class JobNotFoundError(ConveyorError, RuntimeError):
    """No job with the given key exists in the queue.

    Also a ``RuntimeError``, the error SAQ's ``refresh`` raises for a missing job.

    Attributes:
        key: The key looked up.
        queue: The queue name.
    """

    def __init__(self, key: str, queue: str) -> None:
        self.key = key
        self.queue = queue
        super().__init__(f"no job with key {key!r} in queue {queue!r}")


class LeaseLostError(ConveyorError):
    """A write about a job's attempt was refused: its lease is no longer this attempt's.

    The job was recovered by another worker after the lease expired (a stalled event loop, a
    backend out of reach for longer than the lease), or finished, aborted or replaced
    meanwhile. Nothing of the refused write was stored.

    Attributes:
        key: The job's key.
        queue: The queue name.
        what: The refused write (``update``, ``finish`` ...).
    """

    def __init__(self, key: str, queue: str, what: str) -> None:
        self.key = key
        self.queue = queue
        self.what = what
        super().__init__(
            f"{what} of job {key!r} in queue {queue!r} refused: this attempt no longer holds "
            "the job's lease (another worker recovered it, or it was finished or replaced)"
        )


class BackendError(ConveyorError):
    """The storage engine failed or could not be reached.

    Attributes:
        backend: The backend's name.
        detail: Extra data (for instance the underlying exception).
    """

    def __init__(self, backend: str, message: str, detail: Any = None) -> None:
        self.backend = backend
        self.detail = detail
        super().__init__(f"{backend}: {message}")


class AdminError(ConveyorError):
    """A request the admin service cannot carry out as asked (a bad filter, level or time)."""


class RunNotFoundError(AdminError):
    """No run with the given id exists in the queues searched.

    Attributes:
        run_id: The id looked up.
        queues: The names of the queues searched.
    """

    def __init__(self, run_id: str, queues: Iterable[str]) -> None:
        self.run_id = run_id
        self.queues = list(queues)
        super().__init__(
            f"no run with id {run_id!r} in queue(s) {', '.join(self.queues)}: it never existed "
            "or was purged by the retention period"
        )


class UnknownQueueError(AdminError):
    """A queue name that the admin service does not serve.

    Attributes:
        queue: The name asked for.
        known: The names served.
    """

    def __init__(self, queue: str, known: Iterable[str]) -> None:
        self.queue = queue
        self.known = sorted(known)
        super().__init__(f"no queue named {queue!r}; known queues: {', '.join(self.known)}")


class JobStateError(AdminError):
    """An action that the job's status does not allow (retrying a running job ...).

    Attributes:
        key: The job's key.
        status: Its current status.
    """

    def __init__(self, key: str, status: str, reason: str) -> None:
        self.key = key
        self.status = status
        super().__init__(f"job {key!r} is {status}: {reason}")
