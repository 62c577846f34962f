"""Runnable examples of aioqlog (see each file's docstring for how to run it)."""
