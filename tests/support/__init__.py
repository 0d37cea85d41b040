"""Helpers shared by the integration tests: polling, counting points and rows."""
