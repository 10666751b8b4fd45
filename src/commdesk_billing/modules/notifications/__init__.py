"""Billing notifications: events other domains announce, turned into emails and webhook
calls to CommDesk's notification service, each delivery recorded and sent once."""
