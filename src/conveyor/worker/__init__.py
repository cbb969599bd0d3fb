"""The worker: lifecycle, executor, write-behind, leases, recovery and cron."""

from conveyor.worker.worker import Worker

__all__ = ["Worker"]
