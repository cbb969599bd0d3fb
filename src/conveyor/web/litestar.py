"""Mounting the console in Litestar.

Litestar's ``@asgi(path, is_mount=True)`` strips the mount path from ``path`` but leaves
``root_path`` empty and appends a ``/``, so the console would write links without its
prefix and answer its forms with redirects. The adapter puts the prefix back in
``root_path`` and restores the original ``path`` before calling the console::

    from litestar import Litestar
    from conveyor.web import create_app, litestar_handler

    console = create_app(admin)
    app = Litestar(route_handlers=[litestar_handler(console, "/admin/queue")])
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send


def mounted_scope(scope: Scope, path: str) -> Scope:
    """The scope the console expects under ``path``: prefix in ``root_path``, full ``path``."""
    prefix = "/" + path.strip("/")
    fixed = dict(scope)
    root = str(scope.get("root_path", "")).rstrip("/")
    if not root.endswith(prefix):
        root += prefix
    fixed["root_path"] = root
    raw = scope.get("raw_path")
    original = unquote(raw.decode("latin-1")) if isinstance(raw, bytes) else str(scope["path"])
    if not original.startswith(root):
        original = root + str(scope["path"])
    if original.endswith("/") and original != root + "/":
        original = original.rstrip("/")
    fixed["path"] = original
    return fixed


def litestar_handler(console: ASGIApp, path: str) -> Any:
    """A Litestar route handler that mounts ``console`` at ``path``.

    Raises:
        MissingDependencyError: When Litestar is not installed.
    """
    try:
        asgi = importlib.import_module("litestar").asgi
    except ImportError:  # pragma: no cover - depends on the environment
        from conveyor.errors import ConfigurationError

        raise ConfigurationError(
            "mounting the console in Litestar needs Litestar: pip install litestar"
        ) from None

    prefix = "/" + path.strip("/")

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await console(mounted_scope(scope, prefix), receive, send)

    mounted.__name__ = f"conveyor_console_{abs(hash(prefix))}"
    return asgi(prefix, is_mount=True, copy_scope=True)(mounted)


__all__ = ["litestar_handler", "mounted_scope"]
