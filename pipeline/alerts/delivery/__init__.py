"""Delivery of the outbox's notifications: one `Channel` per way out (webhook, e-mail, ...), run by `OutboxSender`."""
