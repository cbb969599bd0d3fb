"""The console mounted in a Starlette application, with three ways to sign in."""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import httpx
from conveyor import Queue
from conveyor.admin import Admin
from conveyor.types import Context, SettingsDict
from conveyor.web import BasicAuth, Principal, TokenAuth, create_app
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

queue = Queue.from_url("sqlite:///console.db")


async def send_receipt(ctx: Context, *, order_id: int) -> str:
    return f"receipt for order {order_id}"


settings: SettingsDict = {"queue": queue, "functions": [send_receipt]}

# --8<-- [start:auth]
# People with passwords: the console's sign-in form, or HTTP Basic. Role "admin" may
# enqueue, retry and abort; role "read" only looks.
people = BasicAuth(
    {
        "ops": (os.environ.get("OPS_PASSWORD", "change-me"), "admin"),
        "support": (os.environ.get("SUPPORT_PASSWORD", "change-me-too"), "read"),
    }
)

# Scripts and monitoring: bearer tokens of either role (8 characters at least).
scripts = TokenAuth(
    {
        os.environ.get("DEPLOY_TOKEN", "admin-token-123"): "admin",
        os.environ.get("MONITORING_TOKEN", "read-token-123"): "read",
    }
)

ADMINS = {"ada@example.com"}


def signed_in_staff(request: HTTPConnection) -> Principal | None:
    """The host application's own sign-in: here, an authenticating proxy's header.

    Trust such a header only when the proxy is the sole way in and strips it from
    incoming requests; otherwise read your own session (request.session, request.user).
    """
    email = request.headers.get("x-forwarded-email")
    if email is None:
        return None
    return Principal(email, "admin" if email in ADMINS else "read")


# --8<-- [end:auth]

# --8<-- [start:mount]
admin = Admin.from_settings(settings)
console = create_app(
    admin,
    auth=[people, scripts, signed_in_staff],
    title="Shop jobs",
    secret_key=os.environ.get("CONSOLE_SECRET_KEY"),  # signs sessions; shared by replicas
)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await admin.disconnect()  # a mounted console leaves that to its host


app = Starlette(routes=[Mount("/admin/jobs", app=console)], lifespan=lifespan)
# --8<-- [end:mount]


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as http:
        overview, enqueue = "/admin/jobs/api/overview", "/admin/jobs/api/enqueue"
        job = {"name": "send_receipt", "args": {"order_id": 7}}
        reader = {"Authorization": "Bearer read-token-123"}
        deployer = {"Authorization": "Bearer admin-token-123"}

        print("nobody reads:", (await http.get(overview)).status_code)
        print("read token reads:", (await http.get(overview, headers=reader)).status_code)
        print(
            "read token enqueues:", (await http.post(enqueue, json=job, headers=reader)).status_code
        )
        print(
            "admin token enqueues:",
            (await http.post(enqueue, json=job, headers=deployer)).status_code,
        )
        support = await http.get("/admin/jobs/api/me", auth=("support", "change-me-too"))
        print("support:", support.json()["role"])
        ada = await http.get("/admin/jobs/api/me", headers={"X-Forwarded-Email": "ada@example.com"})
        print("ada:", ada.json()["role"])
    await admin.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
