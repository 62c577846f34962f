"""gunicorn settings: uvicorn workers, every log line written behind aioqlog.

    gunicorn -c examples/gunicorn_conf.py examples.fastapi_app:app

gunicorn runs ``logconfig_dict`` through ``logging.config.dictConfig`` in the
master process. Each uvicorn worker gives uvicorn's error and access loggers the
handlers of ``gunicorn.error`` and ``gunicorn.access``: here, aioqlog queue
handlers, whose listeners the app's lifespan starts in every worker
(``aioqlog.integrations.starlette.lifespan``). The master has no event loop, so
its own lines are handled in the caller, as aioqlog does while no listener runs.
"""

bind = "127.0.0.1:8000"
workers = 2
worker_class = "uvicorn_worker.UvicornWorker"  # pip install uvicorn-worker

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s %(message)s"},
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        },
        "access": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "access",
        },
        "queued": {
            "class": "aioqlog.QueueHandler",
            "handlers": ["console"],
            # "()" keeps this working on every Python version (3.12+ requires it).
            "queue": {"()": "aioqlog.LogQueue", "maxsize": 10000},
        },
        "queued_access": {
            "class": "aioqlog.QueueHandler",
            "handlers": ["access"],
            "queue": {"()": "aioqlog.LogQueue", "maxsize": 10000},
        },
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["queued"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["queued_access"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["queued"]},
}
