"""Decisions on fraud reviews: release the held credits, or refund the payment."""
