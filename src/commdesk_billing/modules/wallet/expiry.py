"""Credits that expire (DESIGN §10): a lot past its `expires_at` is forfeited, its credits
to credits:expired and its unrecognized basis to breakage revenue, with a statement line.

Packs carry no expiry by default; promotional grants may. Only what the wallet can give up
expires now: credits a refund in flight reserved stay for that refund, and credits backing
an active spend hold stay until the hold is settled (a capture draws them first, being the
soonest to expire; a release makes them available, and the next run forfeits them).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.wallet import recognition, triggers, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import lock, now
from commdesk_billing.modules.wallet.model import TxnType


async def expire_wallet(conn: AsyncConnection, wallet_id: uuid.UUID) -> int:
    """Forfeit what has expired in one wallet; how many credits. The wallet's row lock is
    held throughout, so a spend never races the forfeit."""
    wallet = await lock(conn, wallet_id)
    at = now()
    budget = wallet.available_credits  # never more than the wallet can give up now
    forfeited = 0
    batch = writer.OperationBatch([wallet])
    for lot in await repo.expired_lots(conn, wallet_id, at):
        credits = min(lot.drawable, budget - forfeited)
        if credits <= 0:
            break
        basis = recognition.share(lot.unrecognized_paise, lot.credits_remaining, credits)
        # The lot's state is in the key: a lot forfeited in parts gets a line per part,
        # and a second run over the same state finds the line and stops (the unique key).
        key = f"expiry:{lot.id}:{lot.credits_remaining}"
        if await repo.find_line(conn, key) is not None:
            continue
        reason = f"credits expired (granted {lot.granted_at.date().isoformat()})"
        batch.add(
            wallet_id,
            writer.WalletOperation(
                journal=postings.credits_expired(
                    operation_key=key,
                    wallet_id=wallet.id,
                    available_account_id=wallet.available_account_id,
                    credits=credits,
                    basis_paise=basis,
                    at=at,
                    reason=reason,
                    lot_id=lot.id,
                ),
                txn_type=TxnType.expiry,
                credits=credits,
                idempotency_key=key,
                source=reason,
                source_id=str(lot.id),
                metadata={
                    "lot_id": str(lot.id),
                    "expired_at": lot.expires_at.isoformat() if lot.expires_at else None,
                    "basis_paise": basis,
                },
                now=at,
                available_delta=-credits,
                lot_changes=[(lot.id, -credits, 0)],
                lot_basis=[(lot.id, basis, 0)] if basis else [],
                lot_id=lot.id,
            ),
        )
        forfeited += credits
    await batch.flush(conn)
    # Expiry takes `available` down as a debit does: a wallet it takes across its
    # auto-recharge level is told, or no later debit would ever cross it from above.
    await triggers.after_debit(conn, wallet, batch.wallet(wallet_id))
    return forfeited
