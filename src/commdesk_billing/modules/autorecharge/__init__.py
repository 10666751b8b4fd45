"""Auto-recharge (DESIGN §12): a wallet that falls below its level asks for more credits."""
