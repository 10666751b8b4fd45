"""The deployment files' tests read files and run linters: no database, broker or MongoDB.

The suite's root conftest has a session-wide autouse fixture (`_redis_keys`) that asks for
the run's settings, and so for its database, virtual host and MongoDB. Here it is replaced by
one that needs nothing, so `pytest tests/deploy` runs on a machine with no services at all
(the workflow's `deploy-files` job); in a whole run the root fixture still does its work
for every other test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _redis_keys() -> Iterator[None]:
    yield
