"""Compose several writes into one SQL statement (data-modifying CTEs).

A wallet operation writes a journal, its entries, a statement line, lot changes and the
wallet row. Sending them as one statement makes the operation a single round trip while
holding the wallet's row lock, which is what bounds a busy wallet's throughput. Foreign keys
and the ledger's balance trigger still run, at the end of the statement.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


class CompositeWrite:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._params: dict[str, Any] = {}

    def add(self, sql: str, params: dict[str, Any]) -> str:
        """Add one data-modifying part; returns its name, for later parts to select from."""
        clash = self._params.keys() & params.keys()
        if clash:
            raise ValueError(f"parameter names used twice: {sorted(clash)}")
        name = f"p{len(self._parts)}"
        self._parts.append(f"{name} AS ({sql})")
        self._params.update(params)
        return name

    async def execute(
        self, conn: AsyncConnection, final_sql: str, params: dict[str, Any]
    ) -> Result[Any]:
        statement, all_params = self.statement(final_sql, params)
        return await conn.execute(sql(statement), all_params)

    def statement(
        self, final_sql: str, params: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The whole statement, ending in `final_sql`, and its parameters."""
        params = params or {}
        clash = self._params.keys() & params.keys()
        if clash:
            raise ValueError(f"parameter names used twice: {sorted(clash)}")
        prefix = f"WITH {', '.join(self._parts)} " if self._parts else ""
        return prefix + final_sql, {**self._params, **params}
