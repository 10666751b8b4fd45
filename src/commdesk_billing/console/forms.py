"""Reading what a console form or query sent: url-encoded bodies parsed by the standard
library (no multipart parser is installed, and no console form uploads a file), each field
checked here, so a bad value is a message on the page, never a 500 or a JSON 422."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs

from starlette.requests import Request

MAX_FIELDS = 20


class FormError(ValueError):
    """What is wrong with one field, said to the person who filled it in."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


Fields = dict[str, str]


async def read_form(request: Request) -> Fields:
    """The form's fields, one value each (a repeated field is refused). The body has been
    size-capped by the request hygiene and the CSRF guard before this runs."""
    body = await request.body()
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("form", "the form could not be read; reload the page") from exc
    fields: Fields = {}
    for name, values in parsed.items():
        if len(values) != 1:
            raise FormError(name, f"{name} was sent more than once")
        fields[name] = values[0]
    return fields


def text(
    fields: Fields, name: str, *, label: str, min_length: int = 1, max_length: int = 200
) -> str:
    value = fields.get(name, "").strip()
    if not min_length <= len(value) <= max_length:
        raise FormError(name, f"{label} needs {min_length} to {max_length} characters")
    if not value.isprintable():
        raise FormError(name, f"{label} may not contain control characters")
    return value


def optional_text(fields: Fields, name: str, *, label: str, max_length: int = 200) -> str | None:
    if not fields.get(name, "").strip():
        return None
    return text(fields, name, label=label, max_length=max_length)


def choice(fields: Fields, name: str, options: tuple[str, ...], *, label: str) -> str:
    value = fields.get(name, "")
    if value not in options:
        raise FormError(name, f"choose a {label}")
    return value


def parse_uuid(value: str) -> uuid.UUID | None:
    if len(value) > 40:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


_RUPEES = re.compile(r"^(\d{1,8})(?:\.(\d{1,2}))?$")


def rupees_to_paise(fields: Fields, name: str, *, label: str) -> int | None:
    """'150' or '150.5' or '150.50' → paise (integers only, never a float); blank → None."""
    raw = fields.get(name, "").strip().replace(",", "")
    if not raw:
        return None
    match = _RUPEES.match(raw)
    if match is None:
        raise FormError(name, f"{label} is an amount in rupees, like 150 or 150.50")
    whole, fraction = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(fraction)


def idempotency_key(fields: Fields) -> str:
    """The key the page put in the form when it was drawn: submitting twice (a double click,
    a reload) repeats the same request, and the refund is asked for once."""
    key = fields.get("idempotency_key", "")
    if parse_uuid(key) is None:
        raise FormError("idempotency_key", "the form is out of date; reload the page")
    return f"console:{key}"
