"""GST: the one place tax is computed (DESIGN §3)."""
