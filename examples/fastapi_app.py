"""A FastAPI app whose logging goes through aioqlog (run it with uvicorn).

    uvicorn examples.fastapi_app:app --log-config examples/logging_config.json

The log config puts an aioqlog.QueueHandler in front of a slow file handler
(50 ms per record, like SMTP). aioqlog's lifespan starts the listener before
the app's own startup and drains it after the app's shutdown: on Ctrl-C or
SIGTERM, every record is written before the process exits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aioqlog.integrations.starlette import lifespan

log = logging.getLogger("app")


@asynccontextmanager
async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    """The app's own startup and shutdown, wrapped by aioqlog's lifespan."""
    log.info("app starting")
    yield {"greeting": "hello"}
    log.info("app stopping")


app = FastAPI(lifespan=lifespan(app_lifespan))


@app.get("/health")
async def health() -> dict[str, str]:
    """Say the app is up (without logging)."""
    return {"status": "ok"}


@app.get("/items/{item}")
async def read_item(item: int) -> dict[str, int]:
    """Log one line per request: behind aioqlog, the slow handler never delays it."""
    log.info("served item %d", item)
    return {"item": item}
