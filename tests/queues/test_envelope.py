"""The message envelope: what is accepted, what goes straight to the dead-letter queue."""

from __future__ import annotations

import json
import uuid

import pytest

from commdesk_billing.queues.envelope import InvalidMessage, decode, new_envelope
from commdesk_billing.telemetry.context import remote_parent

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_round_trip_keeps_everything_and_the_trace() -> None:
    with remote_parent(TRACE):
        env = new_envelope("wallet.debit.requested", {"credits": 5}, correlation_id="c-1")
    assert new_envelope("t", {}).traceparent is None  # only inside the block
    back = decode(env.encode())
    assert back == env and back.traceparent == TRACE and back.attempt == 1
    assert back.next_attempt().attempt == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe", "body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (
            b"[]",
            "not a valid envelope: : Input should be a valid dictionary or instance of Envelope",
        ),
        (
            b"{}",
            "not a valid envelope: id: Field required; type: Field required; "
            "occurred_at: Field required; payload: Field required",
        ),
        (
            json.dumps(
                {"id": "x", "type": "t", "occurred_at": "2026-11-26T10:00:00Z", "payload": {}}
            ).encode(),
            "not a valid envelope: id: Input should be a valid UUID, invalid character: "
            "found `x` at 0",
        ),
        (
            json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "Bad Type!",
                    "occurred_at": "2026-11-26T10:00:00Z",
                    "payload": {},
                }
            ).encode(),
            "not a valid envelope: type: String should match pattern '^[a-z][a-z0-9_.]{0,99}$'",
        ),
        (
            json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "t",
                    "occurred_at": "2026-11-26T10:00:00",
                    "payload": {},
                }
            ).encode(),
            "not a valid envelope: occurred_at: Input should have timezone info",
        ),
        (
            json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "t",
                    "occurred_at": "2026-11-26T10:00:00Z",
                    "payload": {},
                    "extra": 1,
                }
            ).encode(),
            "not a valid envelope: extra: Extra inputs are not permitted",
        ),
        (
            json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "t",
                    "occurred_at": "2026-11-26T10:00:00Z",
                    "payload": {},
                    "attempt": 0,
                }
            ).encode(),
            "not a valid envelope: attempt: Input should be greater than or equal to 1",
        ),
        (b"{" * 2_000_000, "message body over 1 MB"),
    ],
)
def test_invalid_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    """The reason is what the consumer puts in the dead letter's `x-detail` header (with
    `x-reason: invalid_message`), so it must say exactly what is wrong."""
    with pytest.raises(InvalidMessage) as err:
        decode(body)
    assert str(err.value) == reason


def test_a_malformed_traceparent_is_not_propagated() -> None:
    for bad in ("nonsense", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", TRACE.upper()):
        with remote_parent(bad):
            assert new_envelope("t", {}).traceparent is None
