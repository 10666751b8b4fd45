"""HTTP routes of the sandbox, one module per area of Cashfree's PG API."""
