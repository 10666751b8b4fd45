"""`verify_jobs`: a test of `ledger verify` run once on one backend and once on two."""

from __future__ import annotations

import pytest

from commdesk_billing.modules.ledger import invariants
from commdesk_billing.modules.ledger.verify import verify_ledger


@pytest.fixture(params=[1, 2], ids=["jobs1", "jobs2"])
def verify_jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every `verify_ledger` call of the test uses this many backends unless it names its
    own. With two, the chain walk's runs are cut at 2 entries, so even a test's few wallets
    make many runs and both backends walk some of them (at the real size, 200 000 entries,
    a test ledger is one run: nothing to share)."""
    jobs = int(request.param)
    if jobs > 1:
        monkeypatch.setattr(invariants, "_CHUNK_ENTRIES", 2)
    defaults = verify_ledger.__kwdefaults__
    assert defaults is not None and "jobs" in defaults
    monkeypatch.setitem(defaults, "jobs", jobs)
    return jobs
