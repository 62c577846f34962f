"""Framework integrations: start and stop aioqlog with the application.

* ``aioqlog.integrations.starlette.lifespan`` for Starlette and FastAPI.
* ``aioqlog.integrations.aiohttp.cleanup_ctx`` for aiohttp.

The frameworks are not dependencies of aioqlog: these modules only follow
their protocols.
"""
