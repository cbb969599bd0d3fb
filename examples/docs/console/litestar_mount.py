"""The console in a Litestar application."""

from conveyor import Queue
from conveyor.admin import Admin
from conveyor.types import Context
from conveyor.web import BasicAuth, create_app, litestar_handler
from litestar import Litestar


async def send_receipt(ctx: Context, *, order_id: int) -> None:
    pass


queue = Queue.from_url("sqlite:///shop.db")

# --8<-- [start:mount]
admin = Admin(queue, functions={"send_receipt": send_receipt})
console = create_app(admin, auth=BasicAuth({"ops": "change-me"}))


async def disconnect_admin() -> None:
    await admin.disconnect()


app = Litestar(
    route_handlers=[litestar_handler(console, "/admin/jobs")],
    on_shutdown=[disconnect_admin],
)
# --8<-- [end:mount]
