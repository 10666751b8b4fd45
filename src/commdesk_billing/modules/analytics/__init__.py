"""Financial analytics (DESIGN §14): rollups of the books and of payment activity, the
trial balance and the GST summary, read by finance_admin and the auditor."""
