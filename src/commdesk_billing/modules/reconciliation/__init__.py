"""Reconciliation, three ways: our books against themselves (`ledger verify`'s invariants),
our payments and refunds against Cashfree's settlement reports, our payouts against
Cashfree's transfers. Each mismatch is a finding a person explains or resolves."""
