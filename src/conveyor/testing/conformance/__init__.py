"""The conformance suite: every behaviour users rely on, run on every backend.

A third-party backend runs it with a ``conftest.py`` that provides a ``conveyor_url``
fixture, and a test module that does::

    from conveyor.testing.conformance import *  # noqa: F401,F403
    from conveyor.testing.fixtures import *  # noqa: F401,F403

Behaviours a backend cannot offer are declared in its ``capabilities`` and the tests that
need them say so when they skip.
"""

from conveyor.testing.conformance.test_admin import *  # noqa: F403
from conveyor.testing.conformance.test_crash import *  # noqa: F403
from conveyor.testing.conformance.test_cron import *  # noqa: F403
from conveyor.testing.conformance.test_logs import *  # noqa: F403
from conveyor.testing.conformance.test_ownership import *  # noqa: F403
from conveyor.testing.conformance.test_queue import *  # noqa: F403
from conveyor.testing.conformance.test_saq import *  # noqa: F403
from conveyor.testing.conformance.test_serialization import *  # noqa: F403
from conveyor.testing.conformance.test_worker import *  # noqa: F403
