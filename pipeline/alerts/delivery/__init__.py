"""Delivery of the outbox's notifications to their channels."""
