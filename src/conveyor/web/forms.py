"""The enqueue form: widgets generated from a task's signature, and reading them back.

Each parameter gets the widget its annotation suggests (a list of choices for a
``Literal`` or an ``Enum``, a number for ``int`` and ``float``, a true/false choice for
``bool``, a line for ``str``, a JSON box for lists, dicts and anything else); an empty widget
leaves the argument out, so the task's default applies. The raw JSON editor sends the whole
arguments object instead.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.admin.models import AvailableJob, ParameterInfo
from conveyor.admin.signatures import json_kinds
from conveyor.web.errors import WebError

FIELD_PREFIX = "arg."
#: Seconds in the past a chosen run time may be (the time spent filling in the form).
PAST_TOLERANCE_S = 300.0


@dataclass
class Widget:
    """One form field of a task parameter."""

    name: str
    field: str
    kind: str  # choice, int, float, bool, str, json
    annotation: str | None
    required: bool
    default: Any
    value: str
    hint: str
    choices: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (JSON value, label)

    @property
    def default_text(self) -> str:
        """The default as shown next to the field."""
        return json.dumps(self.default) if not self.required else ""


def widget_kind(annotation: str | None) -> str:
    """The widget of a parameter with this annotation."""
    kinds = json_kinds(annotation)
    if kinds is None:
        return "json"
    kinds = kinds - {"null"}
    if kinds == {"bool"}:
        return "bool"
    if kinds == {"int"}:
        return "int"
    if kinds == {"int", "float"}:
        return "float"
    if kinds == {"str"}:
        return "str"
    return "json"


def _initial(parameter: ParameterInfo, kind: str) -> str:
    if parameter.required or parameter.default is None:
        return ""
    if kind == "choice":
        return json.dumps(parameter.default)
    if kind == "str" and isinstance(parameter.default, str):
        return parameter.default
    if kind == "bool":
        return "true" if parameter.default else "false"
    return json.dumps(parameter.default)


_HINTS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "json": "JSON (text that is not JSON is sent as a string)",
    "strict_json": "JSON",
    "choice": "one of the choices",
}


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def widgets(job: AvailableJob, submitted: Mapping[str, str] | None = None) -> list[Widget]:
    """The form fields of a task, filled with what was submitted or the defaults."""
    out = []
    for parameter in job.parameters:
        if parameter.kind in ("var_positional", "var_keyword", "positional_only"):
            continue
        kind = "choice" if parameter.choices else widget_kind(parameter.annotation)
        name = FIELD_PREFIX + parameter.name
        value = submitted.get(name) if submitted is not None else None
        kinds = json_kinds(parameter.annotation)
        strict = kind == "json" and kinds is not None and "str" not in kinds
        out.append(
            Widget(
                name=parameter.name,
                field=name,
                kind=kind,
                annotation=parameter.annotation,
                required=parameter.required,
                default=parameter.default,
                value=_initial(parameter, kind) if value is None else value,
                hint=_HINTS["strict_json" if strict else kind],
                choices=[(json.dumps(c), _label(c)) for c in parameter.choices or []],
            )
        )
    return out


def fields_from_arguments(job: AvailableJob, args: Mapping[str, Any]) -> dict[str, str]:
    """Form fields (and the raw editor's text) filled with ``args``, as if submitted.

    Parameters that ``args`` leaves out start from their defaults.
    """
    fields: dict[str, str] = {"args": json.dumps({**default_arguments(job), **args}, indent=2)}
    for widget in widgets(job):
        if widget.name not in args:
            continue
        value = args[widget.name]
        if value is None:
            fields[widget.field] = ""
        elif widget.kind == "str" and isinstance(value, str):
            fields[widget.field] = value
        elif widget.kind == "bool" and isinstance(value, bool):
            fields[widget.field] = "true" if value else "false"
        else:
            fields[widget.field] = json.dumps(value)
    return fields


def default_arguments(job: AvailableJob) -> dict[str, Any]:
    """The arguments object the raw JSON editor starts with: defaults and placeholders."""
    args: dict[str, Any] = {}
    for parameter in job.parameters:
        if parameter.kind in ("var_positional", "var_keyword", "positional_only"):
            continue
        args[parameter.name] = None if parameter.required else parameter.default
    return args


def pretty_args(job: AvailableJob) -> str:
    """The raw JSON editor's starting text."""
    return json.dumps(default_arguments(job), indent=2)


def _convert(widget: Widget, text: str) -> Any:
    if widget.kind == "str":
        return text
    if widget.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
    if widget.kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if widget.kind == "bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError("expected true or false")
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError as exc:
        kinds = json_kinds(widget.annotation)
        if widget.kind == "json" and (kinds is None or "str" in kinds):
            return text  # free text where a string is welcome
        raise ValueError(f"not valid JSON: {exc}") from None


def arguments_from_fields(
    job: AvailableJob, form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The arguments the generated form submitted, and per-parameter errors."""
    args: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for widget in widgets(job, form):
        text = form.get(widget.field, "")
        if text == "" or (widget.kind != "str" and not text.strip()):
            continue
        try:
            args[widget.name] = _convert(widget, text)
        except ValueError as exc:
            errors[widget.name] = str(exc)
    return args, errors


def arguments_from_json(text: str) -> dict[str, Any]:
    """The arguments of the raw JSON editor.

    Raises:
        WebError: 400 when the text is not a JSON object.
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WebError(
            400, "malformed_json", f"arguments: not valid JSON ({exc})", {"args": str(exc)}
        ) from None
    if not isinstance(value, dict):
        raise WebError(
            400, "bad_request", "arguments must be a JSON object", {"args": "not an object"}
        )
    return value


def scheduled_from_form(form: Mapping[str, str]) -> float | None:
    """When the form asks the job to run: None for now, else epoch seconds.

    The ``datetime-local`` field holds the browser's local time; the page's script adds the
    browser's UTC offset (``tz_offset``, minutes as JavaScript gives them). Without it, the
    time is read as UTC.

    Raises:
        WebError: 400 for a time that cannot be read; 422 for a time more than
            :data:`PAST_TOLERANCE_S` in the past (a mistake, not a schedule).
    """
    at = _scheduled_at(form)
    if at is not None and at < time.time() - PAST_TOLERANCE_S:
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise WebError(
            422,
            "bad_request",
            f"the time to run at ({when}) has passed: choose a later time, or Now",
            {"scheduled_at": f"{when} is in the past"},
        )
    return at


def _scheduled_at(form: Mapping[str, str]) -> float | None:
    if form.get("when", "now") != "at":
        return None
    text = form.get("scheduled_at", "").strip()
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise WebError(
            400, "bad_request", "choose the date and time to run at", {"scheduled_at": "invalid"}
        ) from None
    try:
        offset = int(form.get("tz_offset") or 0)
    except ValueError:
        offset = 0
    if naive.tzinfo is not None:
        return naive.timestamp()
    return (naive.replace(tzinfo=UTC) + timedelta(minutes=offset)).timestamp()


def scheduled_from_json(body: Mapping[str, Any]) -> float | None:
    """``scheduled_at`` of an API request: epoch seconds, or ISO 8601 with a zone.

    Raises:
        WebError: 400 for anything else.
    """
    value = body.get("scheduled_at", body.get("scheduled_epoch"))
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise WebError(
        400,
        "bad_request",
        "scheduled_at must be epoch seconds or an ISO 8601 time with a zone",
        {"scheduled_at": f"cannot read {value!r}"},
    )


__all__ = [
    "FIELD_PREFIX",
    "PAST_TOLERANCE_S",
    "Widget",
    "arguments_from_fields",
    "arguments_from_json",
    "default_arguments",
    "fields_from_arguments",
    "pretty_args",
    "scheduled_from_form",
    "scheduled_from_json",
    "widget_kind",
    "widgets",
]
