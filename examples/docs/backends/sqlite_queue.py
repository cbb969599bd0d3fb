"""SQLite queues: where the file is, and its options."""

from conveyor import Queue

# --8<-- [start:urls]
# A path relative to the working directory: three slashes.
queue = Queue.from_url("sqlite:///jobs.db")

# An absolute path: four slashes.
absolute = Queue.from_url("sqlite:////var/lib/shop/jobs.db")

# No path: conveyor.db in the working directory (the default of a settings dict).
default = Queue.from_url("sqlite://")

# Several queues in one file: separate jobs, separate workers.
emails = Queue.from_url("sqlite:///jobs.db", name="emails")
# --8<-- [end:urls]

# --8<-- [start:options]
# Survive a power loss, not only a crash (one more fsync per commit), and let writes wait
# up to 10 s for another process's write instead of 5.
durable = Queue.from_url("sqlite:///jobs.db?synchronous=FULL&busy_timeout=10000")
# --8<-- [end:options]
