"""Redis queues: URLs, key prefixes, your own client."""

from conveyor import Queue
from redis.asyncio import Redis

# --8<-- [start:urls]
# Every key starts with the prefix ("conveyor" by default), then the queue's name.
queue = Queue.from_url("redis://localhost:6379/0?prefix=shop")

# TLS, a password, another database; unix sockets too.
secure = Queue.from_url("rediss://:s3cret@redis.internal:6380/2?prefix=shop")
local = Queue.from_url("unix:///run/redis/redis.sock?db=0&prefix=shop")

# Several queues on one server and prefix: separate jobs, separate workers.
emails = Queue.from_url("redis://localhost:6379/0?prefix=shop", name="emails")
# --8<-- [end:urls]

# --8<-- [start:client]
# Your own client (built with decode_responses=False, the default); left open on disconnect.
client = Redis.from_url("redis://localhost:6379/0", max_connections=50)
shared = Queue.from_url("redis://localhost:6379/0", redis=client, prefix="shop")
# --8<-- [end:client]
