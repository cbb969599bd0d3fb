"""The Conveyor console: an ASGI app over the admin service, to serve or to mount.

::

    from conveyor.admin.service import Admin
    from conveyor.web import BasicAuth, create_app

    console = create_app(Admin.from_settings(settings), auth=BasicAuth({"ops": "s3cret"}))
    app.mount("/admin/queue", console)        # in a Starlette or FastAPI app

Pages: Overview, Runs, Run detail with live logs, Jobs, Enqueue, Cron; a JSON API under
``/api`` described by ``/api/openapi.json``. Needs ``pip install "conveyor[web]"``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    from conveyor.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "starlette", "web", "the web console") from exc

from conveyor.web.app import console_of, create_app
from conveyor.web.auth import BasicAuth, Principal, TokenAuth, auth_from_env
from conveyor.web.litestar import litestar_handler
from conveyor.web.server import run_web, serve, serve_settings, start_console

__all__ = [
    "BasicAuth",
    "Principal",
    "TokenAuth",
    "auth_from_env",
    "console_of",
    "create_app",
    "litestar_handler",
    "run_web",
    "serve",
    "serve_settings",
    "start_console",
]
