"""Fixtures of the wallet tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from commdesk_billing.security.jwt import Role, Scope


@pytest.fixture
def svc(token: Callable[..., str]) -> str:
    """A service token of its own subject that may debit and read wallets."""
    return token(
        Role.service,
        sub=f"svc-{uuid.uuid4().hex[:8]}",
        scopes=[Scope.wallets_debit.value, Scope.wallets_read.value],
    )
