"""Reading task signatures: what a console shows and how it checks arguments before enqueueing.

A task is called ``fn(ctx, **kwargs)``: its first positional parameter receives the context
and is left out. Arguments arrive as JSON, so a check compares each value with the
parameter's annotation, resolved to a type (``typing.get_type_hints``): ``int``, ``float``,
``str``, ``bool``, ``None``, unions and ``Optional``, ``Literal[...]`` and ``Enum`` classes
(a value must be one of theirs; an ``Enum`` is given by its value), lists, tuples, sets and
sequences (each item is checked), dicts and mappings (each value is checked), and
``Annotated[X, ...]`` as ``X``. Anything else (``Any``, a class, a ``TypedDict``) accepts
every value: the task itself stays the authority. An annotation that cannot be resolved
(a name imported only for type checking) is checked from its text, on the outer type only.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import json
import types
import typing
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


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The task's annotations resolved to types; empty when they cannot all be resolved."""
    try:
        return typing.get_type_hints(task_callable(fn))
    except Exception:  # a name that exists only for type checkers, a bad forward reference
        return {}


_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _same(value: Any, allowed: Any) -> bool:
    """JSON equality that keeps ``true`` and ``1`` apart."""
    if isinstance(allowed, enum.Enum):
        allowed = allowed.value
    return isinstance(value, bool) == isinstance(allowed, bool) and value == allowed


def choices(hint: Any) -> list[Any] | None:
    """The values a ``Literal`` or ``Enum`` annotation allows (JSON-friendly), else None.

    ``Optional[...]`` of one of them gives its choices too (leaving the field empty is how a
    form gives None).
    """
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return choices(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        return choices(members[0]) if len(members) == 1 else None
    if origin is typing.Literal:
        return [json_friendly(a) for a in typing.get_args(hint)]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [json_friendly(member) for member in hint]
    return None


def value_error(value: Any, hint: Any) -> str | None:
    """Why the JSON ``value`` does not fit the type ``hint``, or None when it fits (or when
    the hint is one this check does not judge)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return value_error(value, args[0])
    got = f"got {json_kind(value)} {value!r:.60}"
    if hint is None or hint is type(None):
        return None if value is None else f"expected null, {got}"
    if origin in (typing.Union, types.UnionType):
        errors = [value_error(value, member) for member in args]
        if any(error is None for error in errors):
            return None
        others = [e for member, e in zip(args, errors, strict=True) if member is not type(None)]
        if len(others) == 1:
            return others[0]  # Optional[X]: say what is wrong with X
        return f"expected {inspect.formatannotation(hint)}, {got}"
    allowed = choices(hint)
    if allowed is not None:
        if any(_same(value, a) for a in allowed):
            return None
        return f"expected one of {', '.join(json.dumps(a) for a in allowed)}, {got}"
    if hint in (bool, int, float, str):
        kinds = _JSON_KINDS[hint.__name__]
        return None if json_kind(value) in kinds else f"expected {hint.__name__}, {got}"
    container = origin or hint
    if container in _SEQUENCES:
        if not isinstance(value, list):
            return f"expected {inspect.formatannotation(hint)}, {got}"
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"expected {len(args)} items, got {len(value)}"
            items = list(zip(value, args, strict=True))
        else:
            items = [(item, args[0]) for item in value] if args else []
        for index, (item, item_hint) in enumerate(items):
            error = value_error(item, item_hint)
            if error is not None:
                return f"item {index}: {error}"
        return None
    if container in _MAPPINGS:
        if not isinstance(value, dict):
            return f"expected {inspect.formatannotation(hint)}, {got}"
        for key, item in value.items() if len(args) == 2 else ():
            error = value_error(item, args[1])
            if error is not None:
                return f"key {key!r}: {error}"
        return None
    return None


def describe_parameters(fn: Callable[..., Any]) -> tuple[list[ParameterInfo], bool]:
    """The parameters of a task for display, and whether it accepts any argument name."""
    parameters, accepts_any = task_signature(fn)
    hints = type_hints(fn)
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
                choices=choices(hints[p.name]) if p.name in hints else None,
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
    hints = type_hints(fn)
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
        if arg in hints:
            error = value_error(value, hints[arg])
            if error is not None:
                errors[arg] = error
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
    "choices",
    "describe_parameters",
    "json_kind",
    "json_kinds",
    "task_callable",
    "task_signature",
    "type_hints",
    "value_error",
]
