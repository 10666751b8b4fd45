"""Sealed account numbers: they open with the key they name and for the owner they were
sealed for, and nothing else; keys rotate; what is shown is masked."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.security.sealed import KeyRing, SealError, mask, parse_key


def _key() -> bytes:
    return os.urandom(32)


def _ring(**keys: bytes) -> KeyRing:
    current = next(iter(keys))
    return KeyRing(keys=dict(keys), current=current, fingerprint_key=b"f" * 32)


@given(account=st.text(alphabet="0123456789", min_size=6, max_size=20))
def test_a_sealed_number_opens_for_its_owner_only(account: str) -> None:
    ring = _ring(k1=b"k" * 32)
    sealed = ring.seal(account, owner="community:chess")
    assert account not in sealed
    assert ring.open(sealed, owner="community:chess") == account
    with pytest.raises(SealError):
        ring.open(sealed, owner="community:other")  # copied onto another payee's row


def test_two_seals_of_one_number_differ_and_its_fingerprint_does_not() -> None:
    ring = _ring(k1=_key())
    a, b = ring.seal("50100000000017", owner="p"), ring.seal("50100000000017", owner="p")
    assert a != b  # a fresh nonce each time: equal numbers are not equal rows
    assert ring.fingerprint("50100000000017") == ring.fingerprint("50100000000017")
    assert ring.fingerprint("50100000000017") != ring.fingerprint("50100000000018")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # the ciphertext altered
        lambda t: t.replace("v1.", "v2.", 1),
        lambda t: t.replace(".k1.", ".k9.", 1),  # a key nobody has
        lambda t: "not sealed",
        lambda t: t + ".",
    ],
)
def test_anything_altered_does_not_open(tamper: object) -> None:
    ring = _ring(k1=_key())
    sealed = ring.seal("12345678901", owner="p")
    with pytest.raises(SealError):
        ring.open(tamper(sealed), owner="p")  # type: ignore[operator]


def test_keys_rotate_old_seals_still_open_and_are_marked_for_reseal() -> None:
    old, new = _key(), _key()
    before = KeyRing(keys={"k1": old}, current="k1", fingerprint_key=b"f" * 32)
    sealed = before.seal("12345678901", owner="p")
    after = KeyRing(keys={"k1": old, "k2": new}, current="k2", fingerprint_key=b"f" * 32)
    assert after.open(sealed, owner="p") == "12345678901"
    assert after.needs_reseal(sealed) and not after.needs_reseal(after.seal("1", owner="p"))
    retired = KeyRing(keys={"k2": new}, current="k2", fingerprint_key=b"f" * 32)
    with pytest.raises(SealError, match="key this process does not have"):
        retired.open(sealed, owner="p")


def test_a_key_ring_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValueError):
        KeyRing(keys={"k1": _key()}, current="k2", fingerprint_key=b"f" * 32)
    with pytest.raises(ValueError):
        KeyRing(keys={"k1": b"short"}, current="k1", fingerprint_key=b"f" * 32)
    with pytest.raises(ValueError):
        KeyRing(keys={"K 1": _key()}, current="K 1", fingerprint_key=b"f" * 32)
    assert parse_key(base64.b64encode(b"x" * 32).decode()) == b"x" * 32
    with pytest.raises(ValueError):
        parse_key(base64.b64encode(b"x" * 16).decode())


def test_masks_show_the_last_four_only() -> None:
    assert mask("50100000000017") == "XXXXXXXXXX0017"
    assert mask("1234") == "XXXX"
    assert mask(" 9876543210 ") == "XXXXXX3210"


def test_the_ring_comes_from_the_environment_or_a_clear_refusal() -> None:
    from pydantic import SecretStr

    from commdesk_billing.config import Settings
    from commdesk_billing.security.sealed import key_ring

    with pytest.raises(ValueError, match="must all be set"):
        key_ring(Settings())
    k1, fp = base64.b64encode(_key()).decode(), base64.b64encode(_key()).decode()
    ring = key_ring(
        Settings(
            payout_account_keys=SecretStr(f'{{"k1": "{k1}"}}'),
            payout_account_key_id="k1",
            payout_fingerprint_key=SecretStr(fp),
        )
    )
    assert ring.open(ring.seal("12345678901", owner="p"), owner="p") == "12345678901"
    for bad in ('["k1"]', "{}", '{"k1": "short"}', "not json"):
        with pytest.raises(ValueError, match="BILLING_PAYOUT_ACCOUNT_KEYS must be") as err:
            key_ring(
                Settings(
                    payout_account_keys=SecretStr(bad),
                    payout_account_key_id="k1",
                    payout_fingerprint_key=SecretStr(fp),
                )
            )
        assert "short" not in str(err.value)  # the configured value is never echoed
