"""Cashfree Subscriptions in the sandbox: plans, mandates, their authorisation and charges."""
