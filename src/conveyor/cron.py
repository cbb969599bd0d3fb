"""Cron schedules and cron job definitions: pure functions of time, no I/O.

A :class:`CronSchedule` turns an expression into fire times. It wraps croniter and adds
what croniter leaves to its callers:

* validation up front: a malformed field is named (``minute``, ``hour``, ``day of month``,
  ``month``, ``day of week``, ``second``), and an expression that never fires
  (``0 0 30 2 *``) is refused;
* time zones through :class:`zoneinfo.ZoneInfo` bases, never fixed offsets, so a schedule
  does not drift by an hour after a DST change;
* DST safety: on a spring-forward day a job whose time does not exist runs when the clock
  jumps (it is never skipped); on a fall-back day a job with a fixed hour and minute runs
  once, not in both copies of the repeated hour. Interval jobs (minute or hour starting with
  ``*``, like ``*/30 * * * *``) keep firing in real time through the repeated hour, as
  Debian's cron does.

Expressions have 5 fields, or 6 where the 6th is SECONDS (SAQ's syntax: ``* * * * * */5``
fires every 5 seconds), or are one of the aliases in :data:`ALIASES`.

A :class:`CronJob` is SAQ's cron job definition: a function, an expression and the job
options of each run. A function may have several; :meth:`CronJob.identity` tells them
apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.errors import ConfigurationError, CronExpressionError
from conveyor.job import JOB_OPTION_FIELDS

if TYPE_CHECKING:
    from croniter import croniter

#: Aliases and the 5-field expressions they stand for.
ALIASES: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0

    def value(self, token: str) -> int | None:
        """The number a token stands for, or None when it is neither a number nor a name."""
        if token.isdigit():
            return int(token)
        lowered = token.lower()
        if lowered in self.names:
            return self.names.index(lowered) + self.names_start
        return None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
    _Field("second", 0, 59),
)

# An item of a field: a start (``*``, ``?``, a value or a range) and an optional step.
_ITEM = re.compile(r"^(?P<start>\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$", re.I)
# Special forms croniter knows, checked by croniter itself: L, nW (day of month);
# n#k, Ln (day of week).
_SPECIAL = re.compile(r"^(?:L|[0-9]+W|[0-9a-z]+#[0-9]+|L[0-9a-z]+)$", re.I)
_DAY_FIELDS = frozenset({"day of month", "day of week"})

# Far enough in the past that every expression fires after it, fixed so validation is pure.
_VALIDATION_BASE = datetime(2000, 1, 1, tzinfo=UTC)
# Bounded loops guard against a croniter quirk turning into an endless loop.
_MAX_STEPS = 64


def resolve_tz(tz: str | tzinfo | None) -> tzinfo:
    """A time zone from a name or a tzinfo; UTC when None.

    ``datetime.UTC`` becomes ``ZoneInfo("UTC")``; other tzinfo objects are used as
    given (a fixed-offset ``timezone`` then has no DST, which is what it says).

    Raises:
        ConfigurationError: For a zone name that does not exist.
    """
    if tz is None or tz is UTC:
        return ZoneInfo("UTC")
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(
                f"unknown time zone {tz!r}: use an IANA name like 'Europe/Berlin' or 'UTC'"
            ) from exc
    return tz


def _check_item(item: str, field: _Field) -> str | None:
    """What is wrong with one comma-separated item of a field, or None."""
    if not item:
        return "an empty item (a stray comma)"
    if item.upper().startswith("H"):
        return "hashed values (H) are not supported"
    if field.name in _DAY_FIELDS and _SPECIAL.match(item):
        return None  # croniter checks these forms; a failure is still blamed on the field
    match = _ITEM.match(item)
    if match is None:
        return f"{item!r} is not a value, a range or a step"
    step = match["step"]
    if step is not None and int(step) == 0:
        return f"the step in {item!r} must be at least 1"
    start = match["start"]
    if start == "?" and field.name not in _DAY_FIELDS:
        return "'?' is only allowed in the day of month and day of week fields"
    if start in ("*", "?"):
        return None
    for token in start.split("-"):
        number = field.value(token)
        if number is None:
            return f"{token!r} is not a number" + (
                f" or a name ({', '.join(field.names)})" if field.names else ""
            )
        if not field.low <= number <= field.high:
            return f"{number} is out of range {field.low}-{field.high}"
    return None


def _split(expression: str) -> list[str]:
    """The fields of an expression, aliases expanded, each field checked.

    Raises:
        CronExpressionError: Naming the field when one is malformed.
    """
    text = expression.strip()
    if not text:
        raise CronExpressionError(expression, "the expression is empty")
    if text.startswith("@"):
        expanded = ALIASES.get(text.lower())
        if expanded is None:
            raise CronExpressionError(expression, f"unknown alias; use one of {', '.join(ALIASES)}")
        text = expanded
    fields = text.split()
    if len(fields) not in (5, 6):
        raise CronExpressionError(
            expression,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 (plus "
            f"seconds last), got {len(fields)}",
        )
    for value, field in zip(fields, _FIELDS, strict=False):
        for item in value.split(","):
            problem = _check_item(item, field)
            if problem is not None:
                raise CronExpressionError(expression, problem, field=field.name)
    return fields


def _blame(fields: list[str]) -> str | None:
    """The first field that croniter rejects on its own (the others set to ``*``)."""
    from croniter import CroniterError, croniter

    for index, field in enumerate(_FIELDS[: len(fields)]):
        alone = ["*"] * len(fields)
        alone[index] = fields[index]
        try:
            croniter(" ".join(alone), _VALIDATION_BASE)
        except (CroniterError, ValueError, KeyError):
            return field.name
    return None


def _is_wildcard(field: str) -> bool:
    return field.startswith("*")


def _repeated(tz: tzinfo, instant: float) -> bool:
    """Whether ``instant`` is the second occurrence of a wall-clock time (DST fall-back).

    ZoneInfo marks it with ``fold=1`` (PEP 495); tzinfo objects without fold support never
    report a repeat, so no run is dropped for them.
    """
    local = datetime.fromtimestamp(instant, tz)
    if not local.fold:
        return False
    return local.replace(fold=0).utcoffset() != local.utcoffset()


def _repeat_span(tz: tzinfo, instant: float) -> tuple[int, int]:
    """The ``[start, end)`` epoch seconds of the repeated stretch holding ``instant``.

    Found by bisection over whole seconds (transitions fall on whole seconds), so the
    scheduler can jump over the whole repeated stretch at once.
    """
    local = datetime.fromtimestamp(instant, tz)
    first, second = local.replace(fold=0).utcoffset(), local.utcoffset()
    assert first is not None and second is not None
    shift = int((first - second).total_seconds())
    here = math.floor(instant)

    def first_where(lo: int, hi: int, repeated: bool) -> int:
        # The first second in (lo, hi] whose repeated-ness is ``repeated``.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _repeated(tz, mid) == repeated:
                hi = mid
            else:
                lo = mid
        return hi

    return first_where(here - shift, here, True), first_where(here, here + shift, False)


def _daily_slot(fields: tuple[str, ...], tz: tzinfo) -> tuple[int, int] | None:
    """For ``M H * * *`` in a zone with a fixed UTC offset (UTC, a ``timezone``): the
    slot's second of the UTC day and the zone's offset in seconds; None otherwise.

    Such a schedule fires once every 86,400 s, so its fire times are plain arithmetic.
    """
    if len(fields) != 5 or fields[2:] != ("*", "*", "*"):
        return None
    minute, hour = fields[0], fields[1]
    if not (minute.isdigit() and hour.isdigit()):
        return None
    if isinstance(tz, ZoneInfo) and tz.key in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu"):
        offset = 0
    elif isinstance(tz, timezone):
        delta = tz.utcoffset(None)
        offset = int(delta.total_seconds())
        if offset != delta.total_seconds():
            return None  # a sub-second offset: leave it to croniter
    else:
        return None
    return int(hour) * 3600 + int(minute) * 60, offset


def _daily_at(daily: tuple[int, int], instant: float) -> float:
    """The slot of ``daily`` on the local day of ``instant`` (epoch seconds)."""
    second, offset = daily
    local_day = math.floor((instant + offset) / 86400) * 86400
    return float(local_day + second - offset)


def _epoch(when: float | datetime) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"naive datetime {when!r}: pass an aware datetime or epoch seconds")
        return when.timestamp()
    return float(when)


class CronSchedule:
    """When a cron expression fires, in a time zone, DST-safe.

    Args:
        expression: 5 fields, 6 with seconds LAST (``* * * * * */5``: every 5 s), or an
            alias (``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
            ``@yearly``, ``@annually``).
        tz: An IANA zone name or a tzinfo; UTC by default.

    Attributes:
        expression: The expression as given.
        fields: Its fields, the alias expanded.
        tz: The time zone in which it is read.

    Raises:
        CronExpressionError: The expression is malformed (naming the field when it can be
            told) or never fires.
        ConfigurationError: ``tz`` is not a known zone.
    """

    def __init__(self, expression: str, tz: str | tzinfo | None = "UTC") -> None:
        self.expression = expression
        self.tz = resolve_tz(tz)
        self.fields = tuple(_split(expression))
        self._text = " ".join(self.fields)
        minute, hour = self.fields[0], self.fields[1]
        # Debian cron's rule: a job is "fixed-time" unless its minute or hour field starts
        # with '*'; only fixed-time jobs are kept from running twice on fall-back.
        self.fixed_time = not _is_wildcard(minute) and not _is_wildcard(hour)
        self._daily = _daily_slot(self.fields, self.tz)
        if self._daily is None:
            self._check_fires(expression)

    def _check_fires(self, expression: str) -> None:
        # croniter is imported when an expression needs it: a worker whose only cron job
        # is the daily purge in UTC never loads it (nor dateutil), which keeps it small.
        from croniter import CroniterError, croniter

        try:
            iterator = croniter(self._text, _VALIDATION_BASE)
        except (CroniterError, ValueError, KeyError) as exc:
            field = _blame(list(self.fields))
            raise CronExpressionError(expression, str(exc), field=field) from exc
        try:
            iterator.get_next(datetime)
        except (CroniterError, ValueError) as exc:
            raise CronExpressionError(
                expression,
                "it never fires: no date matches its day of month, month and day of week",
            ) from exc

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, tz={self.tz!s})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self.fields, str(self.tz)) == (other.fields, str(other.tz))

    def __hash__(self) -> int:
        return hash((self.fields, str(self.tz)))

    def _iterator(self, instant: float) -> croniter:
        from croniter import croniter

        return croniter(self._text, datetime.fromtimestamp(instant, self.tz))

    def _skip(self, instant: float) -> bool:
        return self.fixed_time and _repeated(self.tz, instant)

    def next_after(self, when: float | datetime) -> float:
        """The next fire time strictly after ``when``.

        Args:
            when: Epoch seconds or an aware datetime.

        Returns:
            Epoch seconds of the next fire.
        """
        after = _epoch(when)
        if self._daily is not None:
            slot = _daily_at(self._daily, after)
            return slot if slot > after else slot + 86400
        base = after
        for _ in range(_MAX_STEPS):
            candidate = self._iterator(base).get_next(datetime).timestamp()
            if candidate <= after:
                # A croniter quirk; slots fall on whole seconds, so resume just before
                # the first whole second after both.
                base = math.floor(max(candidate, base)) + 0.999
                continue
            if not self._skip(candidate):
                return candidate
            # The second copy of a repeated hour: start again after the whole stretch.
            _, end = _repeat_span(self.tz, candidate)
            base = end - 1
        raise RuntimeError(f"no fire time found after {after} for {self!r}")  # pragma: no cover

    def previous_at_or_before(self, when: float | datetime) -> float:
        """The latest fire time at or before ``when``: the slot that is due now.

        Consistent with :meth:`next_after`: the slot it returns is one that
        :meth:`next_after` yields, so a skipped repeated-hour run is never "due".

        Args:
            when: Epoch seconds or an aware datetime.

        Returns:
            Epoch seconds of the slot.
        """
        at = _epoch(when)
        if self._daily is not None:
            slot = _daily_at(self._daily, at)
            return slot if slot <= at else slot - 86400
        base = at
        for _ in range(_MAX_STEPS):
            candidate = self._iterator(base).get_prev(datetime).timestamp()
            if candidate > at:
                base = min(candidate, base) - 1
                continue
            if self._skip(candidate):
                start, _ = _repeat_span(self.tz, candidate)
                base = start
                continue
            break
        else:  # pragma: no cover
            raise RuntimeError(f"no fire time found before {at} for {self!r}")
        # croniter's get_prev is strictly before its base and has DST corners of its own;
        # walking forward with next_after settles on the same slots next_after yields.
        for _ in range(_MAX_STEPS):
            following = self.next_after(candidate)
            if following > at:
                return candidate
            candidate = following
        raise RuntimeError(f"no fire time found before {at} for {self!r}")  # pragma: no cover

    def upcoming(self, after: float | datetime, count: int) -> list[float]:
        """The next ``count`` fire times after ``after`` (for displays).

        Returns:
            Epoch seconds, ascending.
        """
        out: list[float] = []
        instant = _epoch(after)
        for _ in range(count):
            instant = self.next_after(instant)
            out.append(instant)
        return out


def function_name(function: Any) -> str:
    """The name a function is registered under: a task handle's ``name``, else its
    ``__qualname__`` as SAQ does (``__name__`` for a function nested in another).

    Raises:
        ConfigurationError: When the object has neither.
    """
    name = getattr(function, "name", None)
    if isinstance(name, str) and hasattr(function, "fn"):
        return name
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if isinstance(qualname, str) and "<locals>" in qualname:
        qualname = getattr(function, "__name__", qualname)  # nested: its own name
    if not isinstance(qualname, str):
        raise ConfigurationError(f"cannot tell the name of function {function!r}; pass (name, fn)")
    return qualname


def _zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


def _stable(value: Any) -> Any:
    """A JSON stand-in for a value json cannot write, the same in every process.

    Tagged with the value's type, so a datetime and its ISO string stay apart. Sets are
    sorted (their iteration order follows ``hash()``, which is salted per process).

    Raises:
        TypeError: When the value's repr names a memory address, which changes between
            processes.
    """
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, set | frozenset):
        items = sorted(json.dumps(item, sort_keys=True, default=_stable) for item in value)
        return {f"<{kind}>": items}
    text = repr(value)
    if " at 0x" in text:
        raise TypeError(f"{text} has no text that is the same in every process")
    return {f"<{kind}>": text}


#: Job fields a cron job may set on the jobs it creates.
_JOB_OPTION_FIELDS = JOB_OPTION_FIELDS


@dataclasses.dataclass
class CronJob:
    """A function enqueued on a cron schedule by the worker (SAQ's ``CronJob``).

    A function may have several cron jobs that differ in expression, zone or kwargs: each
    has its own slots, job key and slot marks (see :func:`conveyor.worker.scheduler.cron_ids`).
    A worker given two that do not differ raises :class:`~conveyor.errors.ConfigurationError`.

    Args:
        function: The task: a callable ``fn(ctx, **kwargs)`` or a task handle.
        cron: The expression (see :class:`CronSchedule`); checked here.
        unique: While a run of this cron job is queued or active, its other slots are
            not enqueued: a slot is tried until it is due, then skipped. Other cron jobs
            of the same function are not held back.
        timeout: The job's timeout in seconds.
        heartbeat: The job's heartbeat in seconds.
        retries: The job's maximum attempts.
        ttl: Seconds a finished run is kept.
        kwargs: Keyword arguments for the function.
        tz: The zone the expression is read in; wins over the worker's ``cron_tz``.
        retry_delay: Seconds before a retry.
        retry_backoff: Exponential backoff: True or a cap in seconds.

    Raises:
        CronExpressionError: When ``cron`` is malformed or never fires.
        ConfigurationError: When ``tz`` is unknown or ``function`` is not callable.
    """

    function: Callable[..., Any]
    cron: str
    unique: bool = True
    timeout: int | None = None
    heartbeat: int | None = None
    retries: int | None = None
    ttl: int | None = None
    kwargs: dict[str, Any] | None = None
    tz: str | tzinfo | None = None
    retry_delay: float | None = None
    retry_backoff: bool | float | None = None

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise ConfigurationError(f"cron job function {self.function!r} is not callable")
        CronSchedule(self.cron, self.tz)

    @property
    def name(self) -> str:
        """The registered name of the function (a task handle's ``name``)."""
        return function_name(self.function)

    def identity(self, default_tz: str | tzinfo | None = None) -> str:
        """What tells this cron job apart from other cron jobs of its function, as canonical
        text that is the same in every process and after restarts (never ``hash()``).

        It holds the function's name, the expression (an alias expanded), the zone it is
        read in and the kwargs. Job options are left out: two cron jobs that differ only
        in ``timeout`` would run the same function with the same arguments at the same
        times. Values json cannot write are written as their type and repr (sets sorted).

        Args:
            default_tz: The worker's ``cron_tz``, for a cron job without a ``tz``.

        Returns:
            Compact JSON with sorted keys.

        Raises:
            ConfigurationError: When a kwargs value has no stable text (its repr names a
                memory address) or its keys cannot be sorted.
        """
        schedule = self.schedule(default_tz)
        fields = {
            "function": self.name,
            "cron": " ".join(schedule.fields),
            "tz": _zone_name(schedule.tz),
            "kwargs": self.kwargs or {},
        }
        try:
            return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_stable)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"the kwargs of a cron job of {self.name!r} cannot identify it: {exc}; "
                "use values with a stable repr (numbers, strings, lists, dicts with str keys)"
            ) from exc

    def schedule(self, default_tz: str | tzinfo | None = None) -> CronSchedule:
        """The schedule, in the job's own ``tz`` or else ``default_tz`` (else UTC).

        Args:
            default_tz: The worker's ``cron_tz``.
        """
        return CronSchedule(self.cron, self.tz if self.tz is not None else default_tz)

    def job_kwargs(self) -> dict[str, Any]:
        """The :class:`~conveyor.job.Job` fields each run sets; only those given.

        A task handle's own job options (``@task(timeout=...)``) come first; the cron job's
        values win over them.
        """
        out: dict[str, Any] = {}
        handle_options = getattr(self.function, "job_options", None)
        if isinstance(handle_options, Mapping) and hasattr(self.function, "fn"):
            out.update(
                {
                    k: v
                    for k, v in handle_options.items()
                    if k in _JOB_OPTION_FIELDS and v is not None
                }
            )
        for name in _JOB_OPTION_FIELDS:
            value = getattr(self, name, None)
            if value is not None:
                out[name] = value
        return out


__all__ = ["ALIASES", "CronJob", "CronSchedule", "function_name", "resolve_tz"]
