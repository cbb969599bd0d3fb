"""The Redis backend: ``redis://``, ``rediss://`` and ``unix://`` queue URLs.

Needs the ``redis`` extra (``pip install "conveyor[redis]"``; ``conveyor[hiredis]`` for the
faster parser).
"""

from conveyor.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
