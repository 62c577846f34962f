"""A plain asyncio script: existing logging config, aioqlog installed around main().

    python examples/asyncio_script.py

Records come from the loop and from a worker thread; all of them are written
before the script ends, and the root logger has its own handler back afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import aioqlog

log = logging.getLogger("script")


def work_in_a_thread(count: int) -> None:
    """Log from a thread that is not the loop's, as blocking library code does."""
    for i in range(count):
        log.info("from the thread %d", i)


async def main(count: int = 5) -> None:
    """Log from the loop and a thread while aioqlog serves the root logger's handlers."""
    async with aioqlog.install() as listener:
        for i in range(count):
            log.info("from the loop %d", i)
        await asyncio.to_thread(work_in_a_thread, count)
    stats = listener.stats
    print(f"handled {stats.handlers[0].handled} records, dropped {stats.dropped}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(threadName)s %(message)s", stream=sys.stdout)
    asyncio.run(main())
