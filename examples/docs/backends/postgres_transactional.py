"""Transactional enqueue: the job exists if and only if the order does.

Needs ``conveyor[postgres]`` and a PostgreSQL server at ``DATABASE_URL``.
"""

import asyncio
import os
from typing import Any

import psycopg
from conveyor import Queue

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


# --8<-- [start:enqueue]
async def place_order(conn: psycopg.AsyncConnection[Any], queue: Queue, customer: str) -> int:
    async with conn.transaction():
        cursor = await conn.execute(
            "INSERT INTO orders (customer) VALUES (%s) RETURNING id", (customer,)
        )
        row = await cursor.fetchone()
        assert row is not None
        order_id: int = row[0]
        # In the same transaction: committed with the order, or rolled back with it.
        await queue.enqueue("send_confirmation", order_id=order_id, connection=conn)
    return order_id


# --8<-- [end:enqueue]


async def main(database_url: str = DATABASE_URL, schema: str = "shop_jobs") -> None:
    # --8<-- [start:queue]
    # The jobs' tables live in their own schema, next to the application's tables.
    queue = Queue.from_url(database_url, schema=schema)
    # --8<-- [end:queue]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TEMPORARY TABLE orders (id serial PRIMARY KEY, customer text)")
        order_id = await place_order(conn, queue, "ada")
        print("order placed, job queued:", await queue.count("queued"))

        # --8<-- [start:rollback]
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO orders (customer) VALUES ('bob')")
                await queue.enqueue("send_confirmation", order_id=-1, connection=conn)
                raise RuntimeError("payment declined")  # the transaction rolls back
        except RuntimeError:
            pass
        print("after the rollback, still one job:", await queue.count("queued"))
        # --8<-- [end:rollback]
        assert order_id > 0
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
