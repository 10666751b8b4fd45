"""The sandbox's pretend banks: Cashfree's test accounts, what a transfer to each does, what a
bank-account verification says of each, and the name match.

Test accounts are Cashfree's own (cashfree.md §6.2 for Payouts, §13.4 for verification);
`NAMED_ACCOUNT` is the sandbox's own, for choosing a name-match result (README). Any other
well-formed account is a valid account whose name at the bank is the name given, and a
transfer to it succeeds.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

SUCCESS = "SUCCESS"
FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class TransferScript:
    """How a transfer to an account goes, before any fault is applied."""

    status: str = SUCCESS  # SUCCESS | FAILED
    status_code: str | None = None  # a failure's code
    pending: str | None = None  # None | "for_a_while" (payout_pending_s) | "for_ever"
    reversed_code: str | None = None  # a success later REVERSED with this code
    slow_answer: bool = False  # the create answers after payout_slow_answer_s


# (bank_account_number, bank_ifsc) or VPA -> script (cashfree.md §6.2, sandbox test data).
TRANSFER_SCRIPTS: dict[tuple[str, str] | str, TransferScript] = {
    ("026291800001191", "YESB0000262"): TransferScript(),
    ("026291800001190", "YESB0000262"): TransferScript(FAILED, "INVALID_ACCOUNT_FAIL"),
    ("2640101002729", "CNRR0002640"): TransferScript(FAILED, "INVALID_IFSC_FAIL"),
    ("007711000031", "HDFC0000077"): TransferScript(pending="for_ever"),
    ("00224412311300", "YESB0000001"): TransferScript(pending="for_a_while"),
    ("7766666351000", "YESB0000001"): TransferScript(
        FAILED, "BENE_BANK_DECLINED", pending="for_a_while"
    ),
    ("7766671735000", "SBIN0000004"): TransferScript(reversed_code="INVALID_ACCOUNT_FAIL"),
    ("02014457596969", "CITI0000001"): TransferScript(reversed_code="ACCOUNT_BLOCKED"),
    ("34978321547298", "KKBK0000001"): TransferScript(slow_answer=True),
    "success@upi": TransferScript(),
    "failure@upi": TransferScript(FAILED, "INVALID_BENE_VPA"),
}


def transfer_script(account: str | None, ifsc: str | None, vpa: str | None) -> TransferScript:
    if account is not None and ifsc is not None:
        return TRANSFER_SCRIPTS.get((account, ifsc), TransferScript())
    return TRANSFER_SCRIPTS.get(vpa or "", TransferScript())


# Verification: (account, IFSC) -> (account_status, account_status_code) (cashfree.md §13.4;
# the two Payouts test accounts that fail are refused by verification too).
INVALID_ACCOUNTS: dict[tuple[str, str], str] = {
    ("7766666585146", "YESB0000001"): "INVALID_BANK_ACCOUNT",
    ("7766667287515", "ICIC0000001"): "INVALID_IFSC",
    ("7766667989884", "RATN0000070"): "ACCOUNT_BLOCKED",
    ("7766667755761", "ICIC0000001"): "NRE_ACCOUNT",
    ("026291800001190", "YESB0000262"): "INVALID_BANK_ACCOUNT",
    ("2640101002729", "CNRR0002640"): "INVALID_IFSC",
}
# The sandbox's own account with a fixed name at the bank: the name sent decides the match.
NAMED_ACCOUNT = ("50100000000017", "HDFC0000001")
NAMES_AT_BANK: dict[tuple[str, str], str] = {NAMED_ACCOUNT: "PRIYA SHARMA"}

BANKS = {
    "YESB": "YES BANK",
    "SBIN": "STATE BANK OF INDIA",
    "HDFC": "HDFC BANK",
    "ICIC": "ICICI BANK",
    "KKBK": "KOTAK MAHINDRA BANK",
    "CITI": "CITIBANK",
    "RATN": "RBL BANK",
    "UTIB": "AXIS BANK",
    "PUNB": "PUNJAB NATIONAL BANK",
    "CNRB": "CANARA BANK",
}


def bank_name(ifsc: str) -> str:
    return BANKS.get(ifsc[:4], "SANDBOX BANK")


def account_check(account: str, ifsc: str) -> tuple[str, str]:
    """(account_status, account_status_code) of a bank-account verification."""
    code = INVALID_ACCOUNTS.get((account, ifsc))
    return ("INVALID", code) if code else ("VALID", "ACCOUNT_IS_VALID")


def name_at_bank(account: str, ifsc: str, name_given: str | None) -> str | None:
    fixed = NAMES_AT_BANK.get((account, ifsc))
    if fixed is not None:
        return fixed
    return _normal(name_given) if name_given else None


# Titles banks leave out of an account's name, so "Mrs. Priya Sharma" is Priya Sharma.
_TITLES = frozenset({"MR", "MRS", "MS", "MISS", "DR", "SHRI", "SMT", "KUMARI"})


def _normal(name: str) -> str:
    words = re.sub(r"[^A-Z ]", " ", name.upper()).split()
    return " ".join(w for w in words if w not in _TITLES)


# Score thresholds (percent) of each result; DIRECT_MATCH only for the same words.
MATCH_RESULTS = (
    (85.0, "GOOD_PARTIAL_MATCH"),
    (70.0, "MODERATE_PARTIAL_MATCH"),
    (60.0, "POOR_PARTIAL_MATCH"),
    (0.0, "NO_MATCH"),
)


def name_match(given: str, at_bank: str) -> tuple[str, str]:
    """(name_match_score as Cashfree writes it, "90.00"; name_match_result).

    The same words in any order, ignoring case, punctuation and titles, are a DIRECT_MATCH;
    otherwise the score is difflib's similarity of the two names with their words sorted,
    which is deterministic, so a test picks its result by the name it sends (README)."""
    a, b = _normal(given).split(), _normal(at_bank).split()
    if sorted(a) == sorted(b):
        return "100.00", "DIRECT_MATCH"
    score = 100 * difflib.SequenceMatcher(None, " ".join(sorted(a)), " ".join(sorted(b))).ratio()
    score = min(score, 99.99)  # only the same words make 100
    result = next(label for floor, label in MATCH_RESULTS if score >= floor)
    return f"{score:.2f}", result
