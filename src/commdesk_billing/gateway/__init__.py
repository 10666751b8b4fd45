"""Cashfree: the HTTP client, webhook signatures, and a local wire-faithful sandbox."""
