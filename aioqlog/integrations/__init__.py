"""Framework integrations: start and stop aioqlog with the application.

* ``aioqlog.integrations.starlette.lifespan`` for Starlette and FastAPI.
* ``aioqlog.integrations.aiohttp.cleanup_ctx`` for aiohttp.
* ``aioqlog.integrations.prometheus.ListenerCollector`` exposes ``listener.stats``
  to Prometheus.

The frameworks and ``prometheus_client`` are not dependencies of aioqlog:
these modules only follow their protocols (the extras install them).
"""
