"""Per-machine summaries that cannot drift: reconciled from `backup_jobs`, and histories imported into it."""
