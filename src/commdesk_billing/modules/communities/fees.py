"""The platform's fee on a community spend (DESIGN §10): pure arithmetic, property-tested.

For N credits drawn from lots with basis B paise at a rate of `fee_bps`:
F = round-half-up(N * fee_bps / 10 000) credits and f = round-half-up(B * fee_bps / 10 000)
paise go to the platform; N - F and B - f to the community. Fee + net = gross in both units,
by construction; the rounding is the receipt's own, shown to the community as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from commdesk_billing.money import half_up

MAX_FEE_BPS = 5000  # 50 %: a plan above this is refused (the column says so too)


@dataclass(frozen=True)
class Split:
    credits: int
    fee_credits: int
    basis_paise: int
    fee_paise: int
    fee_bps: int

    @property
    def community_credits(self) -> int:
        return self.credits - self.fee_credits

    @property
    def community_paise(self) -> int:
        return self.basis_paise - self.fee_paise


def split(credits: int, basis_paise: int, fee_bps: int) -> Split:
    if credits <= 0 or basis_paise < 0 or not 0 <= fee_bps <= MAX_FEE_BPS:
        raise ValueError("credits > 0, basis >= 0 and 0 <= fee_bps <= 5000")
    return Split(
        credits=credits,
        fee_credits=half_up(credits * fee_bps, 10_000),
        basis_paise=basis_paise,
        fee_paise=half_up(basis_paise * fee_bps, 10_000),
        fee_bps=fee_bps,
    )
