"""Payees (communities and partners that are paid out) and their payout accounts: the
account's verification at Cashfree, its Cashfree beneficiary, and the cooling-off after a
change (DESIGN §11). Settlements ask `targets` whether and where a payee can be paid."""
