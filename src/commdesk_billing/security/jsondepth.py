"""How deep a JSON text nests, found by scanning its bytes: no parser, no recursion.

Python's `json` recurses once per level and gives up with RecursionError near a thousand
levels; pydantic and our own walkers recurse too. So depth is bounded before anything parses:
every HTTP body (`security/hygiene.py`), every queue message (`queues/envelope.py`) and every
webhook (its receiver checks again after the signature)."""

from __future__ import annotations

import re

# Our deepest body is 2 levels (metadata in a request); Cashfree's webhooks are about 5
# (data.payment.payment_method.upi). Anything past 32 is not for us, and refusing it here,
# by counting brackets, means no parser ever recurses into 5 000 levels of `[`.
MAX_JSON_DEPTH = 32

_SIGNIFICANT = re.compile(rb'[\[\]{}"\\]')
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


class JsonDepth:
    """The nesting depth of JSON text fed in chunks, found without parsing it (no recursion,
    no objects built): brackets are counted outside strings; inside one, only its closing
    quote and backslash escapes matter. Text that is not JSON is counted the same way; the
    parser refuses it later, on a body already known to be shallow."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        self.limit = limit
        self.depth = 0
        self.deepest = 0
        self._in_string = False
        self._escaped = False  # the chunk ended on a backslash inside a string

    def feed(self, chunk: bytes) -> bool:
        """Take the next chunk; False once the depth has gone past the limit."""
        skip = 0  # matches before this offset are escaped characters
        if self._escaped:
            self._escaped = False
            skip = 1
        for match in _SIGNIFICANT.finditer(chunk):
            at = match.start()
            if at < skip:
                continue
            byte = chunk[at]
            if self._in_string:
                if byte == _BACKSLASH:
                    skip = at + 2
                    self._escaped = skip > len(chunk)
                elif byte == _QUOTE:
                    self._in_string = False
            elif byte == _QUOTE:
                self._in_string = True
            elif byte in _OPENERS:
                self.depth += 1
                if self.depth > self.deepest:
                    self.deepest = self.depth
                    if self.deepest > self.limit:
                        return False
            elif byte in _CLOSERS:
                self.depth = max(0, self.depth - 1)
        return True


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays and objects deeper than `limit`."""
    return not JsonDepth(limit).feed(body)
