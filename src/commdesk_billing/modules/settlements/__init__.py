"""Settlements and payouts (DESIGN §11): what each payee is paid of its payable, per period
or on demand, and the Cashfree Payouts transfer that pays it. See docs/architecture.md
("Settlements") for the money model and the state machine."""
