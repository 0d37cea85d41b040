"""Alerts: rules evaluated by the scheduler, a lifecycle stored in MySQL, notifications through an outbox."""
