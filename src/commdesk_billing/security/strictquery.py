"""Unknown query parameters are refused, not ignored.

`?status=FAILED` sent to a list that has no `status` filter would answer every row, and the
caller would read it as the failed ones. So under `/v1` a query parameter
the route does not declare is a 400 `unknown_query_parameter` naming it and what the route
takes. (A parameter sent twice is refused before this, by `hpp.py`.)

Installed as an application-wide dependency: it runs before the route's own parameters
are read, and it reads the route's declared query parameters from FastAPI's own record of
them, so a new filter is allowed the moment it is declared.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from commdesk_billing.errors import UnknownQueryParameter

_PREFIX = "/v1/"
_declared: dict[int, frozenset[str]] = {}


def _walk(dependant: Dependant) -> set[str]:
    """The query parameters of a route's dependency tree (its own and its dependencies')."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk(sub)
    return names


def _query_names(route: APIRoute) -> frozenset[str]:
    key = id(route)
    if key not in _declared:
        _declared[key] = frozenset(_walk(route.dependant))
    return _declared[key]


async def strict_query(request: Request) -> None:
    if not request.url.path.startswith(_PREFIX):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise UnknownQueryParameter(
            f"unknown query parameter(s) {', '.join(unknown)}; this route takes: {takes}",
            unknown=unknown,
            allowed=sorted(allowed),
        )
