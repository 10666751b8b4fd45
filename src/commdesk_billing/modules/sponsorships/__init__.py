"""Sponsor payments (DESIGN §11): a sponsor pays a community through a Cashfree order
opened by the payments module; the community's part is held in escrow and released to its
payable milestone by milestone. The platform's fee and the GST on it are the only revenue.
"""
