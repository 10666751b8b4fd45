"""The metric names a PromQL expression reads, and the names our registry exposes: for the
tests that every dashboard panel and alert rule reads a metric that exists."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

# PromQL words that look like names: keywords, aggregation modifiers.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Names of the series `expr` selects (functions, keywords, label names and template
    variables left out). Durations (`5m`) never start a name: digits come first."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    # Grafana's and alert templates' variables ($__rate_interval, $value) are not names.
    text = re.sub(r"\$\w+", "", text)
    return {n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS}


def exposed_names() -> set[str]:
    """Every series name our registry can expose, from each family's name and type
    (prometheus_client names a counter family without `_total`; a labelled metric with no
    child yet has no samples, so samples alone would miss it)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        base = family.name
        if family.type == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif family.type == "histogram":
            names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"}
        elif family.type == "summary":
            names |= {base, f"{base}_count", f"{base}_sum", f"{base}_created"}
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
    return names
