"""aioqlog: an asyncio-native queue for the stdlib ``logging`` module.

Application code keeps calling ``logger.info(...)`` from any thread; a
``QueueHandler`` hands records over a ``LogQueue`` into the event loop, where a
``QueueListener`` task delivers them to ordinary handlers in worker threads, or
awaits ``AsyncHandler`` subclasses on the loop. The loop never waits on handler I/O.

``install()`` puts an existing logger's handlers behind aioqlog in one call;
``listening()`` runs the listeners that ``logging.config.dictConfig`` set up.
"""

from ._async_handler import AsyncHandler as AsyncHandler
from ._bridge import LogQueue as LogQueue
from ._handler import QueueHandler as QueueHandler
from ._install import install as install
from ._install import listening as listening
from ._listener import QueueListener as QueueListener
from ._stats import HandlerStats as HandlerStats
from ._stats import ListenerStats as ListenerStats

__version__ = "0.1.0"

__all__ = [
    "AsyncHandler",
    "HandlerStats",
    "ListenerStats",
    "LogQueue",
    "QueueHandler",
    "QueueListener",
    "install",
    "listening",
]
