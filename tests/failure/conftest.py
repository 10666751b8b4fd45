"""The fault suite (issue 12): real services, real faults — a broker that accepts TCP and
never answers, a broker that forgets its queues, signals while a worker connects. Each test
injects its fault and then counts what money or work was lost or applied twice (the goal: 0).
"""

from __future__ import annotations

from tests.queues.conftest import qsettings

__all__ = ["qsettings"]
