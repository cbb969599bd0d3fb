"""Typed task arguments in the console: Enum and Literal parameters are choices whose
values are checked, list items are checked, and malformed JSON says why."""

from __future__ import annotations

import enum
import html
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Optional

import httpx
import pytest
from test_pages import csrf_of
from web_support import BEARER

from conveyor.admin import Admin
from conveyor.admin.signatures import check_arguments, value_error
from conveyor.errors import ArgumentsError
from conveyor.web import create_app

Clients = Callable[..., httpx.AsyncClient]


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


@pytest.mark.parametrize(
    ("hint", "value", "fits"),
    [
        (int, 3, True),
        (int, True, False),
        (float, 3, True),
        (Literal["EUR", "USD"], "EUR", True),
        (Literal["EUR", "USD"], "JPY", False),
        (Literal[1, 2], True, False),
        (Colour, "red", True),
        (Colour, 2, True),
        (Colour, "RED", False),
        (Optional[Colour], None, True),  # noqa: UP045 - the spelling users write
        (list[str], ["a", "b"], True),
        (list[str], [1, 2], False),
        (list[int] | None, [1, "x"], False),
        (Sequence[int], [1, 2], True),
        (tuple[int, str], [1, "a"], True),
        (tuple[int, str], [1, 2], False),
        (tuple[int, ...], [1, 2, 3], True),
        (dict[str, int], {"a": 1}, True),
        (dict[str, int], {"a": "1"}, False),
        (dict[str, list[int]], {"a": [1, "x"]}, False),
        (Annotated[int, "meta"], "x", False),
        (Any, object(), True),
        (Colour | Literal["green"], "green", True),
    ],
)
def test_value_error(hint: Any, value: Any, fits: bool) -> None:
    assert (value_error(value, hint) is None) is fits


def test_check_arguments_names_the_item_that_does_not_fit() -> None:
    async def task(ctx: Any, *, tags: list[str], currency: Literal["EUR", "USD"] = "EUR") -> None:
        pass

    with pytest.raises(ArgumentsError) as caught:
        check_arguments("task", task, {"tags": ["ok", 3], "currency": "JPY"})
    assert caught.value.errors == {
        "tags": "item 1: expected str, got int 3",
        "currency": 'expected one of "EUR", "USD", got str \'JPY\'',
    }


async def test_available_jobs_give_enum_defaults_by_value_and_choices(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    jobs = (await client.get("/api/available-jobs")).json()
    report = next(j for j in jobs["available_jobs"] if j["name"] == "report")
    parameters = {p["name"]: p for p in report["parameters"]}
    assert parameters["kind"]["default"] == "daily"
    assert parameters["kind"]["choices"] == ["daily", "weekly"]
    assert parameters["currency"]["choices"] == ["EUR", "USD"]
    assert parameters["tags"]["choices"] is None


async def test_the_api_checks_choices_and_list_items(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)

    async def enqueue(args: dict[str, Any]) -> httpx.Response:
        return await client.post("/api/enqueue", json={"name": "report", "args": args})

    wrong = await enqueue({"currency": "JPY", "kind": "monthly", "tags": [1, 2]})
    assert wrong.status_code == 422
    fields = wrong.json()["error"]["fields"]
    assert "JPY" in fields["currency"] and '"EUR", "USD"' in fields["currency"]
    assert '"daily", "weekly"' in fields["kind"]
    assert fields["tags"].startswith("item 0: expected str")
    assert (await enqueue({"currency": "USD", "kind": "weekly", "tags": ["a"]})).status_code == 201


async def test_the_form_offers_choices_preselects_the_default_and_reports_bad_json(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    page = await client.get("/enqueue?job=report")
    kind = page.text.split('name="arg.kind"', 1)[1].split("</select>", 1)[0]
    assert '<option value="&#34;daily&#34;" selected>daily</option>' in kind
    assert "&lt;ReportKind" not in page.text and "ReportKind.DAILY" not in page.text
    data = {
        "csrf_token": csrf_of(page),
        "job": "report",
        "mode": "form",
        "arg.kind": '"weekly"',
        "arg.currency": '"USD"',
        "arg.limits": '{"a": 1',
    }
    bad = await client.post("/enqueue", data=data)
    assert bad.status_code == 422
    limits = bad.text.split('name="arg.limits"', 1)[1].split("</div>", 1)[0]
    assert "not valid JSON" in limits and "expected" not in limits
    data["arg.limits"] = '{"a": 1}'
    assert (await client.post("/enqueue", data=data)).status_code == 303
    queued = await admin.jobs()
    assert [j.kwargs for j in queued.jobs] == [
        {"kind": "weekly", "currency": "USD", "limits": {"a": 1}}
    ]


async def test_run_now_of_a_cron_job_opens_the_form_with_its_own_arguments(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    cron = await client.get("/cron")
    link = html.unescape(re.findall(r'href="([^"]*/enqueue\?job=report[^"]*)"', cron.text)[0])
    form = await client.get(link)
    assert form.status_code == 200
    kind = form.text.split('name="arg.kind"', 1)[1].split("</select>", 1)[0]
    assert '<option value="&#34;weekly&#34;" selected>weekly</option>' in kind
    currency = form.text.split('name="arg.currency"', 1)[1].split("</select>", 1)[0]
    assert '<option value="&#34;USD&#34;" selected>USD</option>' in currency
    raw = html.unescape(form.text.split('name="args"', 1)[1].split("</textarea>", 1)[0])
    assert json.loads(raw.split(">", 1)[1]) == {
        "kind": "weekly",
        "currency": "USD",
        "tags": None,
        "limits": None,
    }
