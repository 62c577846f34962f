"""aioqlog's benchmarks, side by side with the peers: ``python -m benchmarks``."""
