"""SAQ's own queue classes after the move: a ``RedisQueue`` on the application's Redis client
and a ``PostgresQueue`` on its psycopg pool. Below the imports, this is SAQ code.

Needs ``conveyor[redis]`` and ``conveyor[postgres]``, a Redis server at ``REDIS_URL`` and a
PostgreSQL server at ``DATABASE_URL``.
"""

# --8<-- [start:imports]
import asyncio
import os

from conveyor import Queue, Worker  # was: from saq import Queue, Worker
from conveyor.errors import InvalidUrlError  # was: from saq.errors import InvalidUrlError
from conveyor.queue.postgres import PostgresQueue  # was: from saq.queue.postgres import ...
from conveyor.queue.redis import RedisQueue  # was: from saq.queue.redis import RedisQueue
from conveyor.types import Context  # was: from saq.types import Context
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

# --8<-- [end:imports]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dshop"
)


async def double(ctx: Context, *, x: int) -> int:
    return 2 * x


async def one_job(queue: Queue) -> int:
    """Run a worker in the background for one ``apply``."""
    worker = Worker(queue, [double])
    running = asyncio.create_task(worker.start())
    try:
        result: int = await queue.apply("double", x=21)
        return result
    finally:
        await worker.stop()
        await running


# --8<-- [start:redis]
async def with_redis(redis_url: str, name: str) -> None:
    redis = Redis.from_url(redis_url)  # the application's own client
    queue = RedisQueue(redis, name=name)
    print("redis:", await one_job(queue))
    await queue.disconnect()  # closes the client's connections, as SAQ's does


# --8<-- [end:redis]


# --8<-- [start:postgres]
async def with_postgres(database_url: str, name: str) -> None:
    # The application's pool: the queue uses it and leaves it open (manage_pool_lifecycle
    # defaults to False for a pool you pass). Its tables go in the schema that the URL's
    # search_path names ("shop" here).
    async with AsyncConnectionPool(database_url, open=False) as pool:
        queue = PostgresQueue(pool=pool, name=name)
        print("postgres:", await one_job(queue))
        await queue.disconnect()
        async with pool.connection() as conn:  # still yours
            await conn.execute("SELECT 1")


# --8<-- [end:postgres]


# --8<-- [start:errors]
def queue_for(url: str) -> Queue | None:
    try:
        return Queue.from_url(url)
    except InvalidUrlError:  # an unknown scheme, as in SAQ
        return None


# --8<-- [end:errors]


async def main(redis_url: str = REDIS_URL, database_url: str = DATABASE_URL) -> None:
    await with_redis(redis_url, "emails")
    await with_postgres(database_url, "emails")
    print("kafka:", queue_for("kafka://localhost"))
    print("redis queue:", isinstance(queue_for(redis_url), RedisQueue))


if __name__ == "__main__":
    asyncio.run(main())
