"""Refunds of credit purchases (the seed's refundPayment), in an order that cannot lose money.

`requesting` (step 1), `processing` (steps 2 and 3), `jobs` (the sync), `reads`.

1. `open_refund` (the API's transaction): lock the payment, then its wallet; work out what is
   still refundable (unconsumed, unreserved credits of the purchase's own lots, DESIGN §3);
   hold the credits the refund takes back, earmarked on those lots; write the refund row
   (CREATED) and `refund.processing` into the outbox. No spend can take those credits now,
   and a spend that got there first shrinks what is refundable (the 422 says how much).
2. `process` (the `refund.processing` consumer, and the sync job): with the refund's row
   locked, ask Cashfree to refund under our refund id (repeat-safe at Cashfree), or ask what
   became of it; apply the answer.
3. SUCCESS: capture the hold (credits back to issuance, lots marked refunded), post the INR
   journals (deferred revenue and GST payable to refunds payable, then refunds payable paid
   out of gateway clearing), add to the payment's refunded total, announce the credit note.
   CANCELLED, or FAILED (Cashfree refused the request): release the hold.

A refund is given up only on Cashfree's explicit word. No answer, a 5xx or a 429 leaves it
where it is, to be asked again; money goes out at most once and credits come back exactly
once, because every step is a conditional move plus idempotent wallet operations, all in
one transaction.
"""
