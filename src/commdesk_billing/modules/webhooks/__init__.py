"""The Cashfree webhook receiver: verify, store raw, hand over to the queue."""
