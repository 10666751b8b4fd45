"""Mandates: UPI AutoPay / card standing instructions (Cashfree Subscriptions)."""
