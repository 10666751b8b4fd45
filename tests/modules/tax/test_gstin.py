"""GSTIN validation: the shape, the state code and the mod-36 check character."""

from __future__ import annotations

import pytest

from commdesk_billing.modules.tax.gstin import check_character, problem, state_of

# Published sample GSTINs (their check characters are the real ones).
VALID = ["27AAPFU0939F1ZV", "29AAGCB7383J1Z4"]


@pytest.mark.parametrize("gstin", VALID)
def test_published_gstins_are_valid(gstin: str) -> None:
    assert problem(gstin) is None
    assert check_character(gstin[:14]) == gstin[14]


@pytest.mark.parametrize("gstin", VALID)
def test_any_single_mistyped_character_is_caught(gstin: str) -> None:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for position in range(15):
        for char in alphabet:
            if char == gstin[position]:
                continue
            typo = gstin[:position] + char + gstin[position + 1 :]
            assert problem(typo) is not None, typo


@pytest.mark.parametrize(
    ("gstin", "why"),
    [
        ("27AAPFU0939F1Z", "15 characters"),
        ("27aapfu0939f1zv", "in capitals"),
        ("99AAPFU0939F1ZV", "state code"),
        ("27AAPFU0939F1AV", "Z and a check"),
        ("27AAPFU0939F1ZW", "check character"),
    ],
)
def test_what_is_wrong_is_said(gstin: str, why: str) -> None:
    found = problem(gstin)
    assert found is not None and why in found


def test_the_state_is_the_first_two_digits() -> None:
    assert state_of("27AAPFU0939F1ZV") == "27"
