"""Run history and logs, read in Python: run it after ``produce.py``."""

import asyncio

from conveyor.admin import Admin

from worker import settings


async def main() -> None:
    # --8<-- [start:history]
    async with Admin.from_settings(settings) as admin:
        # One run per attempt, newest first; filter by status, function, job key, text ...
        page = await admin.runs(function="send_welcome", limit=10)
        print(f"{page.total} runs of send_welcome")
        oldest = page.runs[-1]
        print("oldest:", oldest.status, "attempt", oldest.attempt)

        # The log lines the task (and its hooks) emitted while it ran.
        logs = await admin.logs(oldest.run_id)
        for line in logs.lines:
            print(f"  {line.level:<7} {line.message}")

        # Failed runs carry their error; run() adds arguments, result and traceback.
        failed = await admin.runs(status="failed", limit=5)
        print(f"{failed.total} failed runs")
    # --8<-- [end:history]


if __name__ == "__main__":
    asyncio.run(main())
