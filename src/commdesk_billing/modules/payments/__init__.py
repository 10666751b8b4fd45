"""Credit purchases through Cashfree: orders, their state machine, crediting."""
