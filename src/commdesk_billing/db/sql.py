"""Cached `text()` constructs.

Building a `text()` parses its bind parameters with a regular expression every time; on the
hot path that was a tenth of a debit's CPU. The SQL strings are a fixed, small set (the
composite writes have a handful of shapes), so they are parsed once.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import TextClause, text


@lru_cache(maxsize=1024)
def sql(statement: str) -> TextClause:
    return text(statement)
