"""The low-balance seam: every debit path tells it when a wallet's available credits went
from at or above its trigger level to below it.

The wallet knows nothing of what happens then (auto-recharge lives in its own module,
which imports the wallet, never the other way): the composition root installs the hook
(`wiring.install`). A wallet whose `auto_recharge_trigger` is NULL (auto-recharge off)
costs its debits one attribute check and nothing else; only a debit that crosses the level
calls the hook, so the debits below it never do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.wallet import available
from commdesk_billing.modules.wallet.model import Wallet

# Called in the debit's transaction, with the wallet's row still locked: the wallet as the
# debit left it and its available credits before. Whatever it writes commits (or rolls
# back) with the debit.
LowBalanceHook = Callable[[AsyncConnection, Wallet, int], Awaitable[None]]

_hook: LowBalanceHook | None = None


def install(hook: LowBalanceHook | None) -> None:
    """Set (or, with None, remove) the process's hook."""
    global _hook
    _hook = hook


def crossed(before: Wallet, after: Wallet) -> bool:
    """The operation took the wallet from >= its level to < it."""
    level = after.auto_recharge_trigger
    return level is not None and before.available_credits >= level > after.available_credits


async def after_debit(conn: AsyncConnection, before: Wallet, after: Wallet) -> None:
    if _hook is not None and crossed(before, after):
        await _hook(conn, after, before.available_credits)


# Credits a spend hold gave back to `available` (released, expired, or captured in part):
# called in that transaction with the wallet's row still locked, the wallet as it is left.
# Fraud's pending reviews of the wallet hold what they could not hold before (credits that
# were behind the hold when the review opened), so voiding a hold cannot free them.
CreditsBackHook = Callable[[AsyncConnection, Wallet], Awaitable[None]]

_back: CreditsBackHook | None = None


def install_credits_back(hook: CreditsBackHook | None) -> None:
    """Set (or, with None, remove) the process's hook."""
    global _back
    _back = hook


async def after_credits_back(
    conn: AsyncConnection, after: Wallet, credits: int, *, cause: str
) -> None:
    """`cause`: the operation, once per hold (what hears of the credits keys by it)."""
    if credits <= 0:
        return
    if _back is not None:
        await _back(conn, after)
    # Whatever of them a review did not just take is spendable: announced as every other
    # way credits become available is (`available`), after the hook, in this transaction.
    await available.announce(conn, wallet_id=after.id, credits=credits, cause=cause)
