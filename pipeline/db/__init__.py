"""Database access: table definitions and the engine factory."""
