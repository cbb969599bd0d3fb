"""Conveyor in web applications: queues connected for the app's lifetime, in one line.

The framework-neutral core is :class:`QueueConfig` (a named queue, its tasks, cron jobs
and worker settings) and :class:`Conveyor` (the application's queues: connected on
startup, disconnected on shutdown, an admin service for the console, and optionally
workers inside the web process). Thin adapters wire it into each framework:

* :mod:`conveyor.integrations.starlette`: ``lifespan=conveyor.lifespan``,
  ``get_queue(request)``, ``mount_console(app, path, conveyor)``, ``status_routes``.
* :mod:`conveyor.integrations.fastapi`: the same, ``Depends(queue_dependency("default"))``
  and a ``status_router`` with typed models.
* :mod:`conveyor.integrations.litestar`: ``ConveyorPlugin`` (lifespan, ``Queue``
  injection, console) and a ``status_router``.

::

    conveyor = Conveyor(
        [
            QueueConfig("default", url="postgresql://localhost/app", tasks=[registry]),
            QueueConfig("emails", url="postgresql://localhost/app", tasks=[send_email],
                        cron_tz="America/New_York", concurrency=20),
        ]
    )
"""

from conveyor.integrations.config import QueueConfig
from conveyor.integrations.core import Conveyor
from conveyor.integrations.status import JobAccepted, JobReport, JobStatusService

__all__ = ["Conveyor", "JobAccepted", "JobReport", "JobStatusService", "QueueConfig"]
