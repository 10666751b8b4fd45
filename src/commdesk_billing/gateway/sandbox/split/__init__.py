"""Easy Split (vendors, order splits, vendor settlements) and the merchant's settlement
reports (cashfree.md §6.1, §7, §14), on the PG side of the sandbox."""
