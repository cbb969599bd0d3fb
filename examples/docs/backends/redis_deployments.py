"""Redis Cluster and Sentinel queues: URLs, and your own cluster client."""

from conveyor import Queue
from redis.asyncio.cluster import RedisCluster

# --8<-- [start:cluster]
# Any of the cluster's nodes serve to discover it; each queue lives on the master that owns
# its slot, so queues with different names spread over the masters.
emails = Queue.from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000?prefix=shop", name="emails")
orders = Queue.from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000?prefix=shop", name="orders")

# TLS and a password, as for one server.
secure = Queue.from_url("rediss+cluster://:s3cret@10.0.0.1:7000?prefix=shop")
# --8<-- [end:cluster]

# --8<-- [start:cluster_client]
# Your own cluster client (decode_responses=False, the default); left open on disconnect.
cluster = RedisCluster.from_url("redis://10.0.0.1:7000")
shared = Queue.from_url("redis+cluster://10.0.0.1:7000", redis=cluster, prefix="shop")
# --8<-- [end:cluster_client]

# --8<-- [start:sentinel]
# The sentinels, the name of the master they watch ("mymaster"), then the database. The
# credentials are the master's; sentinel_password (and sentinel_username) the sentinels'.
tasks = Queue.from_url(
    "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"
    "?prefix=shop&sentinel_password=watch"
)
# --8<-- [end:sentinel]
