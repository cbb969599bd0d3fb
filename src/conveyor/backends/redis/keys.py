"""The whole Redis key scheme of one queue, in one place.

Every key of a queue starts with ``{prefix}:{{queue}}:``. The braces are a Redis Cluster hash
tag: the slot is computed from the queue name alone, so all of a queue's keys live in one
slot and every Lua script can touch any of them (scripts build the per-job and per-run key
names from the prefixes below; they are in the same slot as the declared ``KEYS``).

Fixed keys (passed to every script as ``KEYS``, in this order):

==============  ===========  ======================================================
name            type         content
==============  ===========  ======================================================
``ready``       sorted set   claimable jobs. Score: priority. Member:
                             ``DDDDDDDDDDDDDDD:SSSSSSSSSSSSSSS:key`` (due in ms and
                             seq, zero padded to 15 digits). Equal scores sort by
                             member bytes, so ``ZRANGE ready 0 n`` yields
                             (priority, due, seq) order.
``scheduled``   sorted set   queued jobs with a ``due`` time; score: due (epoch s).
                             ``claim`` moves the due ones to ``ready`` (or to their
                             group's parking set); nothing polls.
``leases``      sorted set   active/aborting jobs; score: lease expiry (epoch s).
``groups``      hash         group_key -> key of the job holding it (active/aborting).
``seq``         string       INCR counter: job insertion order (``seq`` field).
``run_seq``     string       INCR counter: run ids, and the fencing tokens that
                             ``recover`` gives (a claim's token is its run id).
``wake``        list         wake-up tokens: ``enqueue`` LPUSHes, idle workers BLPOP.
``expiring``    sorted set   finished jobs with an ``expire_at``; score: expiry (ms).
                             The hash itself carries PEXPIREAT; ``expire()`` cleans
                             the indexes of rows Redis already dropped.
``runs``        sorted set   every run; score: started_ms; member: zero-padded run id.
``workers``     hash         worker id -> worker record.
``worker_ttl``  sorted set   worker id -> record expiry (epoch ms).
==============  ===========  ======================================================

Dynamic keys (prefix + suffix, built by scripts):

* ``job:{key}`` hash: payload, status, attempts, started_ms, touched_ms, worker_id, run_id,
  token (the fencing token of the lease; '' or missing when nobody holds it), function,
  priority, due (for a queued job: when it became or becomes claimable, so its enqueue or
  re-queue time when it was due at once), group_key, seq, expire_at.
* ``status:{status}`` sorted set of job keys by seq, one per status (``queued`` includes
  scheduled and parked jobs); together ``queued``, ``active`` and ``aborting`` are the
  incomplete set. ``list_jobs`` and ``count`` read these.
* ``parked:{group}`` sorted set, same shape as ``ready``: queued jobs of a group whose
  group is busy. Releasing a group moves its best parked job back to ``ready``, so a busy
  group never makes ``claim`` rescan its jobs.
* ``run:{run_id}`` hash: key, function, attempt, worker_id, status, started_ms,
  finished_ms, error, detail.
* ``runs:status:{status}``, ``runs:function:{function}``, ``runs:job:{key}``: sorted sets of
  runs like ``runs``, so ``list_runs`` paginates with an exact total for these filters.
* ``logs:{run_id}`` sorted set; score: seq; member: the packed line (see ``codec``).
* ``mark:{token}`` string with ``PX`` expiry, set with ``NX``.
* ``presence`` hash: worker id -> the server's ``run_id`` and the ``CLIENT ID`` of the
  connection the worker's process keeps open for it (see ``presence.py``).

The pub/sub channel ``{prefix}:{{queue}}:finished`` carries a JSON list of the job keys that
a ``finish`` or ``update`` changed. On a Redis Cluster it is a sharded channel
(``SPUBLISH``/``SSUBSCRIBE``), in the queue's slot like its keys.
"""

from __future__ import annotations

import dataclasses

from conveyor.errors import ConfigurationError

#: The order in which fixed keys are passed as ``KEYS`` (``_common.lua`` relies on it).
FIXED_KEYS = (
    "ready",
    "scheduled",
    "leases",
    "groups",
    "seq",
    "run_seq",
    "wake",
    "expiring",
    "runs",
    "workers",
    "worker_ttl",
)

#: Key prefixes under the base (``_common.lua`` builds the same names from the base).
PREFIXES = (
    "job",
    "status",
    "parked",
    "run",
    "runs:status",
    "runs:function",
    "runs:job",
    "logs",
    "mark",
    "finished",
)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyScheme:
    """The key names of one queue.

    Args:
        prefix: Namespace shared by every queue of one application (``conveyor``).
        queue: The queue's name; becomes the Cluster hash tag.

    Raises:
        ConfigurationError: When a name would break the hash tag (braces, empty name).
    """

    prefix: str
    queue: str

    def __post_init__(self) -> None:
        if not self.queue:
            raise ConfigurationError("a Redis queue needs a non-empty name")
        for what, value in (("prefix", self.prefix), ("queue name", self.queue)):
            if "{" in value or "}" in value:
                raise ConfigurationError(
                    f"Redis {what} {value!r} may not contain braces: they would change the "
                    "Cluster hash tag that keeps a queue's keys in one slot"
                )

    @property
    def base(self) -> str:
        """The start of every key of the queue: ``prefix:{queue}:``."""
        return f"{self.prefix}:{{{self.queue}}}:"

    def key(self, name: str) -> str:
        """A fixed key by its name in :data:`FIXED_KEYS`, or a prefix's own key."""
        return self.base + name

    @property
    def fixed_keys(self) -> tuple[str, ...]:
        """The fixed keys, in :data:`FIXED_KEYS` order (the ``KEYS`` of every script)."""
        return tuple(self.base + name for name in FIXED_KEYS)

    def script_args(self, sharded: bool = False) -> tuple[str, str]:
        """What every script gets first in ``ARGV``: the key base, and the command that
        announces changed jobs on :attr:`channel`.

        ``_common.lua`` builds each prefix of :data:`PREFIXES` from the base (``base + name
        + ':'``, the channel ``base + 'finished'``), so a call sends one argument, not ten.

        Args:
            sharded: Announce with ``SPUBLISH`` (a Redis Cluster: the sharded channel stays
                on the node of the queue's slot, where ``PUBLISH`` reaches every node).
        """
        return (self.base, "SPUBLISH" if sharded else "PUBLISH")

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing changed jobs."""
        return self.base + "finished"

    def job(self, key: str) -> str:
        """The hash of the job ``key``."""
        return f"{self.base}job:{key}"

    def run(self, run_id: str) -> str:
        """The hash of a run."""
        return f"{self.base}run:{run_id}"

    def logs(self, run_id: str) -> str:
        """The log lines of a run."""
        return f"{self.base}logs:{run_id}"

    def job_status(self, status: str) -> str:
        """Job keys with ``status``, by seq."""
        return f"{self.base}status:{status}"

    def runs_by_status(self, status: str) -> str:
        """Runs with ``status``, by start time."""
        return f"{self.base}runs:status:{status}"

    def runs_by_function(self, function: str) -> str:
        """Runs of ``function``, by start time."""
        return f"{self.base}runs:function:{function}"

    def runs_by_job(self, key: str) -> str:
        """Runs of the job ``key``, by start time."""
        return f"{self.base}runs:job:{key}"

    def parked(self, group: str) -> str:
        """Queued jobs of a busy ``group``."""
        return f"{self.base}parked:{group}"

    def mark(self, token: str) -> str:
        """A ``once`` mark."""
        return f"{self.base}mark:{token}"

    def everything_pattern(self) -> str:
        """A SCAN MATCH pattern for every key under the prefix (all queues)."""
        return _glob_escape(self.prefix) + ":*"


def run_member(run_id: str | int) -> str:
    """A run id as stored in the run indexes: zero padded, so ties sort numerically."""
    return f"{int(run_id):015d}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
