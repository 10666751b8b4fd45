"""Cashfree Easy Split: communities registered as vendors, and their settlements."""
