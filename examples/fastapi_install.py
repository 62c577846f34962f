"""A FastAPI app under uvicorn's own logging setup, with uvicorn's loggers behind aioqlog too.

    python examples/fastapi_install.py   # serves on 127.0.0.1:8000 (PORT=...); Ctrl-C drains

``lifespan(install=True)`` moves the root logger's handlers behind aioqlog.
uvicorn's default logging gives its ``uvicorn`` and ``uvicorn.access`` loggers
handlers of their own with ``propagate=False``, so their records never reach
root: ``uvicorn_logs`` moves those handlers behind aioqlog as well, for the
app's lifetime, keeping uvicorn's formats.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from fastapi import FastAPI

import aioqlog
from aioqlog.integrations.starlette import lifespan

log = logging.getLogger("app")


@asynccontextmanager
async def uvicorn_logs(app: FastAPI) -> AsyncIterator[None]:
    """Move the handlers of uvicorn's own loggers behind aioqlog while the app runs."""
    async with AsyncExitStack() as stack:
        for name in ("uvicorn", "uvicorn.access"):
            if logging.getLogger(name).handlers:  # none under --log-config or log_config=None
                await stack.enter_async_context(aioqlog.install(name))
        yield


# install=True: root's handlers; uvicorn_logs: uvicorn's.
app = FastAPI(lifespan=lifespan(uvicorn_logs, install=True))


@app.get("/items/{item}")
async def read_item(item: int) -> dict[str, int]:
    """Log one line per request; uvicorn logs the access line."""
    log.info("served item %d", item)
    return {"item": item}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
