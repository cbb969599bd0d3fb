"""Starlette on Redis: enqueue from a handler, apply with a timeout, the console at /jobs."""
