"""Refunds of credit purchases (the seed's refundPayment), in an order that cannot lose money:
`requesting` holds the credits and writes the refund (step 1), `processing` asks Cashfree and
settles it (steps 2 and 3), `jobs` asks again about refunds nobody heard of lately, `reads`
answers who may see what. Each file's docstring tells its steps."""
