"""An aiohttp app whose logging goes through aioqlog.

    python examples/aiohttp_app.py   # serves on 127.0.0.1:8080; Ctrl-C drains and exits

The root logger's handlers (here, basicConfig's stderr handler) move behind
aioqlog for the app's lifetime: the cleanup_ctx entry starts the listener at
startup and drains it at cleanup.
"""

from __future__ import annotations

import logging

from aiohttp import web

from aioqlog.integrations.aiohttp import cleanup_ctx

log = logging.getLogger("app")


async def read_item(request: web.Request) -> web.Response:
    """Log one line per request and answer with the item."""
    item = int(request.match_info["item"])
    log.info("served item %d", item)
    return web.json_response({"item": item})


def make_app() -> web.Application:
    """Build the app; aioqlog's context goes first, so it stops last."""
    app = web.Application()
    app.cleanup_ctx.append(cleanup_ctx(install=True))
    app.router.add_get("/items/{item}", read_item)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(make_app(), host="127.0.0.1", port=8080)
