"""Fraud events and the cheap checks made before an order is opened."""
