"""Reading task signatures: what a console shows and how it checks arguments before enqueueing.

A task is called ``fn(ctx, **kwargs)``: its first positional parameter receives the context
and is left out. Arguments arrive as JSON, so a check compares JSON types with simple
annotations (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, their ``X | None``
and ``Optional[X]`` forms, and parametrized forms such as ``list[int]``, checked on the
outer type only). Anything else (``Any``, a class, a ``Literal``) accepts every value: the
task itself stays the authority.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.admin.models import ParameterInfo, json_friendly
from conveyor.errors import ArgumentsError

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}

# Annotation names (outer type, without ``typing.``) to the JSON kinds they accept.
_JSON_KINDS: dict[str, frozenset[str]] = {
    "int": frozenset({"int"}),
    "float": frozenset({"int", "float"}),
    "str": frozenset({"str"}),
    "bool": frozenset({"bool"}),
    "list": frozenset({"list"}),
    "List": frozenset({"list"}),
    "tuple": frozenset({"list"}),
    "Tuple": frozenset({"list"}),
    "Sequence": frozenset({"list"}),
    "set": frozenset({"list"}),
    "dict": frozenset({"dict"}),
    "Dict": frozenset({"dict"}),
    "Mapping": frozenset({"dict"}),
    "None": frozenset({"null"}),
    "NoneType": frozenset({"null"}),
}


def task_callable(fn: Any) -> Callable[..., Any]:
    """The plain function behind a task handle (anything with ``name`` and ``fn``)."""
    inner = getattr(fn, "fn", None)
    if inner is not None and hasattr(fn, "name") and callable(inner):
        return inner  # type: ignore[no-any-return]
    return fn  # type: ignore[no-any-return]


def task_signature(fn: Callable[..., Any]) -> tuple[list[inspect.Parameter], bool]:
    """The parameters a caller gives (``ctx`` left out) and whether any name is accepted.

    Returns:
        The parameters, and True when the task takes ``**kwargs`` or its signature cannot
        be read.
    """
    try:
        signature = inspect.signature(task_callable(fn))
    except (TypeError, ValueError):
        return [], True
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        parameters = parameters[1:]  # the context
    accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    return parameters, accepts_any


def annotation_text(annotation: Any) -> str | None:
    """An annotation as it reads in the source, or None when there is none."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def describe_parameters(fn: Callable[..., Any]) -> tuple[list[ParameterInfo], bool]:
    """The parameters of a task for display, and whether it accepts any argument name."""
    parameters, accepts_any = task_signature(fn)
    out = []
    for p in parameters:
        required = p.default is inspect.Parameter.empty and p.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        default = None if p.default is inspect.Parameter.empty else json_friendly(p.default)
        out.append(
            ParameterInfo(
                name=p.name,
                kind=_KINDS[p.kind],
                annotation=annotation_text(p.annotation),
                required=required,
                default=default,
            )
        )
    return out, accepts_any


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def json_kinds(annotation: str | None) -> frozenset[str] | None:
    """The JSON kinds an annotation accepts, or None when it accepts anything we can't tell.

    Args:
        annotation: The annotation's text (``"int | None"``, ``"Optional[str]"`` ...).
    """
    if not annotation:
        return None
    text = annotation.strip().strip("'\"").replace("typing.", "")
    members: list[str]
    if text.startswith("Optional[") and text.endswith("]"):
        members = [text[len("Optional[") : -1], "None"]
    elif text.startswith("Union[") and text.endswith("]"):
        members = _split_top(text[len("Union[") : -1], ",")
    else:
        members = _split_top(text, "|")
    kinds: set[str] = set()
    for member in members:
        if member != text and ("|" in member or member.startswith(("Optional[", "Union["))):
            inner = json_kinds(member)
            if inner is None:
                return None
            kinds |= inner
            continue
        outer = member.split("[", 1)[0].strip().strip("'\"")
        accepted = _JSON_KINDS.get(outer)
        if accepted is None:
            return None
        kinds |= accepted
    return frozenset(kinds)


def json_kind(value: Any) -> str:
    """The JSON kind of a decoded value: null, bool, int, float, str, list, dict or other."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "other"


def check_arguments(name: str, fn: Callable[..., Any], args: Any) -> None:
    """Check JSON arguments against a task's signature before it is enqueued.

    Args:
        name: The task's registered name (for the error).
        fn: The task.
        args: The arguments, as decoded from JSON.

    Raises:
        ArgumentsError: Naming each parameter that is unknown, missing, positional-only
            or of the wrong JSON type.
    """
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ArgumentsError(name, {"args": f"must be a JSON object, got {json_kind(args)}"})
    parameters, accepts_any = task_signature(fn)
    by_name = {
        p.name: p
        for p in parameters
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    errors: dict[str, str] = {}
    for arg, value in args.items():
        parameter = by_name.get(arg)
        if parameter is None:
            if not accepts_any:
                known = ", ".join(by_name) or "none"
                errors[str(arg)] = f"unknown parameter; the parameters are: {known}"
            continue
        if parameter.kind == inspect.Parameter.POSITIONAL_ONLY:
            errors[arg] = "positional-only: it cannot be given by name"
            continue
        kinds = json_kinds(annotation_text(parameter.annotation))
        if kinds is not None and json_kind(value) not in kinds:
            expected = annotation_text(parameter.annotation)
            errors[arg] = f"expected {expected}, got {json_kind(value)} {value!r:.60}"
    for parameter in by_name.values():
        if parameter.default is inspect.Parameter.empty and parameter.name not in args:
            errors[parameter.name] = "missing required parameter"
    if errors:
        raise ArgumentsError(name, errors)


__all__ = [
    "annotation_text",
    "check_arguments",
    "describe_parameters",
    "json_kind",
    "json_kinds",
    "task_callable",
    "task_signature",
]
