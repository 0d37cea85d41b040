"""Backup jobs: their vocabulary, the store that owns every write of their rows, and their read views."""
